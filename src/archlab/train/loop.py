"""The training loop: one ``Trainer`` for the CPU, one GPU, and several processes under torchrun.

Order of assembly (cross-cutting features after ``build()``): build -> activation
checkpointing -> FSDP2 sharding -> AdamW -> checkpoint restore -> DDP -> torch.compile.

Each optimizer step reads the global batch of that step (a pure function of seed and step),
keeps this process's rows, splits them into ``grad_accum`` micro-batches, and averages the
loss over the whole global batch; so 1 process and N processes, with or without accumulation,
follow the same loss curve, and a resumed run repeats an uninterrupted one exactly.

Shapes: B global batch, b = B / (processes * grad_accum) micro-batch, T seq_len, V vocabulary.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import ConfigError
from archlab.train.checkpoint import latest_checkpoint, load_checkpoint, read_state, save_checkpoint
from archlab.train.config import RunConfig
from archlab.train.data import describe_data
from archlab.train.distributed import (
    average_buffers, barrier, mean_across, no_grad_sync, setup, shard_fsdp, teardown, wrap_ddp,
)
from archlab.train.metrics import MetricsLog
from archlab.train.mfu import mfu, peak_flops, training_flops_per_token
from archlab.train.optim import make_optimizer
from archlab.train.schedule import lr_at
from archlab.train.wrappers import checkpoint_blocks, compile_model


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm became NaN or infinite; the message names the step and the
    last good checkpoint to resume from."""


@dataclass
class TrainResult:
    run_dir: Path | None  # where logs and checkpoints went (None: nothing written)
    step: int  # optimizer steps done in total (including those before a resume)
    start_step: int  # the step this call started from
    losses: list[float]  # training loss of each step this call ran (losses[i] is step start_step + i + 1)
    val_losses: dict[int, float]  # validation loss by step
    tokens_per_s: float  # over this call's steps (global tokens, all processes)
    last_checkpoint: Path | None  # the newest complete checkpoint
    config: RunConfig  # the resolved config
    model: nn.Module = field(repr=False)  # the trained (unwrapped) model


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy; logits [b, T, V] are upcast to float32 first."""
    V = logits.shape[-1]
    return F.cross_entropy(logits.float().reshape(-1, V), targets.reshape(-1))  # [b*T, V] vs [b*T]


def model_loss(fwd: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss of a [b, T+1] batch through the model's own loss path (``targets=``):
    the head and the cross-entropy run in chunks, never as [b, T, V] float32 logits."""
    return fwd(batch[:, :-1], targets=batch[:, 1:])


def _config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two configs (plain dicts)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _config_diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


class Trainer:
    """Sets a run up (processes, data, model, optimizer, resume) and trains it with :meth:`fit`.

    ``dataset``: anything with ``batch(step, batch_size, seq_len, seed)``, ``iter_eval_windows``
    and ``vocab_size`` (see ``archlab.train.data``); None prepares ``run.train.data``.
    ``out_dir`` None writes nothing (no logs, no checkpoints).
    """

    def __init__(self, run: RunConfig, out_dir: str | Path | None = None, *, dataset: Any = None,
                 resume: bool = False, progress: bool = True, say: Callable[[str], None] | None = None):
        if not isinstance(run, RunConfig):
            raise TypeError(f"run: expected an archlab.train.RunConfig, got {type(run).__name__}")
        tc = run.train
        self.info = info = setup(tc)
        self.say = (say or (lambda s: print(s, flush=True))) if info.is_main else (lambda s: None)
        self.out = Path(out_dir) if out_dir is not None else None
        try:
            self._init(run, dataset, resume, progress)
        except BaseException:
            teardown(info)
            raise

    # -- setup ----------------------------------------------------------------------------------
    def _init(self, run: RunConfig, dataset: Any, resume: bool, progress: bool) -> None:
        tc, info = run.train, self.info
        per = info.world * tc.grad_accum
        if tc.batch_size % per:
            raise ConfigError(f"train.batch_size: {tc.batch_size} must be divisible by processes x grad_accum "
                              f"= {info.world} x {tc.grad_accum}")
        ckpt = None
        if self.out is not None:
            ckpt = latest_checkpoint(self.out)
            if ckpt is not None and not resume:
                raise ConfigError(f"{self.out}: already holds a run (checkpoint {ckpt.name}); pass resume=True "
                                  f"(--resume) to continue it, or choose another output folder")
        self.data = dataset if dataset is not None else self._prepare_data(run, progress)
        run = run.resolved(int(self.data.vocab_size))
        self.run = run
        if ckpt is not None:
            saved = read_state(ckpt)
            diff = self._saved_config_diff(ckpt, run)
            if diff:
                self.say(f"note: the config differs from checkpoint {ckpt.name} in: {', '.join(diff)}")
            if saved.get("data", {}).get("fingerprint") not in (None, describe_data(self.data).get("fingerprint")):
                self.say(f"warning: checkpoint {ckpt.name} was trained on other data "
                         f"({saved['data'].get('fingerprint')}); the resumed run will not repeat the original")

        self.say("resolved config:\n" + run.to_yaml().rstrip())
        if info.is_main and self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            run.to_json(self.out / "run.json")
            tok = getattr(self.data, "tokenizer", None)
            if tok is not None and hasattr(tok, "save"):
                tok.save(self.out / "tokenizer")

        torch.manual_seed(tc.seed)
        model = self._build(run.model)
        self.model = model
        self.optimizer = make_optimizer(model, tc)
        self.step = 0
        self.tokens_seen = 0
        self.last_checkpoint: Path | None = None
        self.last_val: float | None = None
        if ckpt is not None:
            state = load_checkpoint(ckpt, model=model, optimizer=self.optimizer, info=info)
            self.step = int(state["step"])
            self.tokens_seen = int(state.get("tokens_seen", 0))
            self.last_val = state.get("metrics", {}).get("val_loss")
            self.last_checkpoint = ckpt
            self.say(f"resumed from {ckpt} at step {self.step}")
        elif resume and self.out is not None:
            self.say(f"no checkpoint in {self.out}: starting at step 0")
        fwd: nn.Module = model
        if info.mode == "ddp":
            fwd = wrap_ddp(model, info)
        self.sync_module = fwd  # DDP's no_sync, or FSDP2's set_requires_gradient_sync on the model itself
        if tc.compile:
            fwd = compile_model(fwd)
        self.fwd = fwd
        # generic hooks into components: auxiliary losses (MoE balancing), bias updates, stats
        self.aux_modules = [m for m in model.modules() if m is not model and isinstance(getattr(m, "aux_loss", None), torch.Tensor)]
        self.bias_modules = [m for m in model.modules() if m is not model and callable(getattr(m, "update_bias", None))]
        self.stat_modules = [(n, m) for n, m in model.named_modules() if isinstance(getattr(m, "stats", None), dict)]
        bf16 = tc.precision == "bf16" or (tc.precision == "auto" and info.device.type == "cuda")
        self.autocast = (lambda: torch.autocast(info.device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        self.flops_per_token = training_flops_per_token(run.model, tc.seq_len)
        self.peak = peak_flops(info.device, tc.peak_flops)
        n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        self.say(f"model: {n_params:,} parameters | {info.world} process(es), {info.mode}, {info.device}, "
                 f"{'bf16 autocast' if bf16 else 'float32'} | {tc.batch_size} x {tc.seq_len} tokens per step"
                 + (f", {tc.grad_accum} micro-steps" if tc.grad_accum > 1 else ""))
        self._baseline()
        self.log = MetricsLog(self.out, enabled=info.is_main, total_steps=tc.steps, start_step=self.step,
                              tensorboard=tc.tensorboard, progress=progress, say=self.say)

    def _prepare_data(self, run: RunConfig, progress: bool):
        from archlab.data import prepare_dataset

        # the main process tokenises (or finds the cache) first; the others then open it
        ds = prepare_dataset(run.train.data, progress=progress) if self.info.is_main else None
        barrier(self.info)
        return ds if ds is not None else prepare_dataset(run.train.data, progress=False)

    def _saved_config_diff(self, ckpt: Path, run: RunConfig) -> list[str]:
        import json

        path = ckpt / "run.json"
        if not path.is_file():
            return []
        return _config_diff(json.loads(path.read_text()), json.loads(run.to_json()))

    def _build(self, model_cfg) -> nn.Module:
        import archlab

        info, tc = self.info, self.run.train
        model = archlab.build(model_cfg, device=info.device)
        model.train()
        if tc.activation_checkpointing:
            checkpoint_blocks(model)
        if info.sharded:
            shard_fsdp(model, info)
        return model

    def _baseline(self) -> None:
        """Print the unigram entropy of the validation split: a loss any model must beat."""
        from archlab.data.dataset import TokenDataset
        from archlab.data.stats import unigram_entropy

        self.unigram = None
        if isinstance(self.data, TokenDataset):  # tensors in memory: no baseline
            if self.data.val.n_tokens < 2:
                raise ConfigError(f"train.data.val_fraction: the validation split of {self.data} is empty; raise "
                                  f"data.val_fraction (now {self.data.val_fraction}) or use a corpus of more documents")
            self.unigram = unigram_entropy(self.data, "val")
        if self.unigram is not None:
            self.say(f"data: {describe_data(self.data)} | validation unigram entropy {self.unigram:.4f} nats/token")

    # -- training -------------------------------------------------------------------------------
    def _aux_loss(self) -> torch.Tensor | None:
        if not self.aux_modules:
            return None
        return torch.stack([m.aux_loss.float().to(self.info.device) for m in self.aux_modules]).sum()

    def _train_step(self, step: int) -> tuple[float, float, float, float]:
        """One optimizer step; returns (loss, lm loss, aux loss, grad norm)."""
        tc, info = self.run.train, self.info
        lr = lr_at(step, tc)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        per_rank = tc.batch_size // info.world
        b = per_rank // tc.grad_accum
        batch = self.data.batch(step, tc.batch_size, tc.seq_len, tc.seed)  # [B, T+1], the same in every process
        rows = batch[info.rank * per_rank:(info.rank + 1) * per_rank].to(info.device, non_blocking=True)  # [B/world, T+1]
        sums = torch.zeros(2, device=info.device, dtype=torch.float32)  # lm loss, aux loss
        for a in range(tc.grad_accum):
            mb = rows[a * b:(a + 1) * b]  # [b, T+1]
            with no_grad_sync(self.sync_module, info, a == tc.grad_accum - 1):
                with self.autocast():
                    lm = model_loss(self.fwd, mb)
                    aux = self._aux_loss()
                    total = lm if aux is None else lm + aux
                (total / tc.grad_accum).backward()
            sums[0] += lm.detach().float()
            if aux is not None:
                sums[1] += aux.detach().float()
        sums /= tc.grad_accum
        mean_across(info, sums)
        clip = tc.grad_clip if tc.grad_clip is not None else float("inf")
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        if hasattr(gnorm, "full_tensor"):  # FSDP2: a replicated DTensor
            gnorm = gnorm.full_tensor()
        lm_v, aux_v = sums.tolist()
        gn_v = float(gnorm)
        loss_v = lm_v + aux_v
        if not (math.isfinite(loss_v) and math.isfinite(gn_v)):
            self.optimizer.zero_grad(set_to_none=True)
            where = (f"the last good checkpoint is {self.last_checkpoint} (continue from it with --resume / "
                     f"resume=True, e.g. with a lower train.lr)" if self.last_checkpoint is not None
                     else "no checkpoint was saved before it (lower train.lr or set train.grad_clip)")
            raise NonFiniteLossError(f"train: the {'loss' if not math.isfinite(loss_v) else 'gradient norm'} is not "
                                     f"finite at step {step + 1} (loss {loss_v}, lm {lm_v}, aux {aux_v}, grad norm "
                                     f"{gn_v}, lr {lr:.3g}); the weights were not updated; {where}")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        for m in self.bias_modules:
            m.update_bias()
        average_buffers(self.bias_modules, info)
        return loss_v, lm_v, aux_v, gn_v

    def _moe_stats(self, full: bool) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, m in self.stat_modules:
            rec = {}
            for k, v in m.stats.items():
                if isinstance(v, torch.Tensor):
                    if v.numel() == 1:
                        rec[k] = float(v)
                    elif full:
                        rec[k] = [round(x, 5) for x in v.float().tolist()]
            if rec:
                out[name] = rec
        return out

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean next-token loss (nats/token) over ``eval_batches`` batches of the validation split.

        Every process evaluates the same windows (FSDP2 needs all of them in each forward)."""
        tc = self.run.train
        model = self.model
        was = model.training
        model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.info.device)
        count = 0
        # the same windows whatever the process count or accumulation: eval_batches x batch_size
        budget = None if tc.eval_batches is None else tc.eval_batches * tc.batch_size
        seen = 0
        bs = max(1, tc.batch_size // (self.info.world * tc.grad_accum))  # the training micro-batch fits in memory
        try:
            for w in self.data.iter_eval_windows(tc.seq_len, batch_size=bs):
                if budget is not None:
                    if seen >= budget:
                        break
                    w = w[: budget - seen]
                seen += w.shape[0]
                w = w.to(self.info.device)  # [b, T+1]
                with self.autocast():
                    logits = model(w[:, :-1])  # [b, T, V]
                V = logits.shape[-1]
                total += F.cross_entropy(logits.float().reshape(-1, V), w[:, 1:].reshape(-1), reduction="sum")
                count += w[:, 1:].numel()
        finally:
            model.train(was)
        if count == 0:
            raise ConfigError("train.data: the validation split is empty; raise data.val_fraction or add data")
        return float(total) / count

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (all processes call this); None without out_dir."""
        if self.out is None:
            return None
        tc = self.run.train
        state = {
            "tokens_seen": self.tokens_seen,
            "lr": lr_at(max(0, self.step - 1), tc),
            "data": {"next_step": self.step, "seed": tc.seed, "batch_size": tc.batch_size, "seq_len": tc.seq_len,
                     **describe_data(self.data)},
            "metrics": {"val_loss": self.last_val},
        }
        self.last_checkpoint = save_checkpoint(self.out, self.step, model=self.model, optimizer=self.optimizer,
                                               run_config=self.run, state=state, info=self.info,
                                               tokenizer=getattr(self.data, "tokenizer", None), keep_last=tc.keep_last)
        return self.last_checkpoint

    def fit(self, until_step: int | None = None) -> TrainResult:
        """Train to ``run.train.steps`` (or stop after ``until_step``: the schedule still spans
        ``steps``, and a checkpoint is written there, as if the run had been interrupted)."""
        tc = self.run.train
        end = tc.steps if until_step is None else min(tc.steps, until_step)
        if until_step is not None and until_step < 1:
            raise ConfigError(f"until_step: must be >= 1, got {until_step}")
        start = self.step
        losses: list[float] = []
        vals: dict[int, float] = {}
        if start >= end:
            self.say(f"already at step {start} of {tc.steps}: nothing to train")
        tokens_step = tc.batch_size * tc.seq_len
        t_run = time.perf_counter()
        window: list[tuple[float, float]] = []  # (loss, seconds) since the last terminal line
        for step in range(start, end):
            t0 = time.perf_counter()
            loss, lm, aux, gn = self._train_step(step)
            dt = time.perf_counter() - t0
            self.step = step + 1
            self.tokens_seen += tokens_step
            losses.append(loss)
            window.append((loss, dt))
            s = self.step
            tps = tokens_step / dt
            show = s % tc.log_every == 0 or s == end or s == start + 1
            rec: dict[str, Any] = {"step": s, "loss": loss, "lm_loss": lm, "lr": lr_at(step, tc), "grad_norm": gn,
                                   "tokens": self.tokens_seen, "tokens_per_s": tps, "step_s": dt}
            if self.aux_modules:
                rec["aux_loss"] = aux
            u = mfu(tps, self.flops_per_token, self.peak, self.info.world)
            if u is not None:
                rec["mfu"] = u
            if self.stat_modules:
                moe = self._moe_stats(full=show)
                if moe:
                    rec["moe"] = moe
            if (tc.eval_every and s % tc.eval_every == 0) or s == tc.steps:
                self.last_val = vals[s] = rec["val_loss"] = self.evaluate()
            self.log.record(rec)
            if show:
                mean_loss = sum(x for x, _ in window) / len(window)
                mean_tps = tokens_step * len(window) / sum(t for _, t in window)
                window.clear()
                line = (f"step {s:>6}/{tc.steps}  loss {mean_loss:.4f}  lr {rec['lr']:.2e}  gnorm {gn:.3f}  "
                        f"{mean_tps:,.0f} tok/s")
                if u is not None:
                    line += f"  mfu {100 * u:.1f}%"
                if "val_loss" in rec:
                    line += f"  val {rec['val_loss']:.4f}"
                self.log.say(line)
            elif "val_loss" in rec:
                self.log.say(f"step {s:>6}/{tc.steps}  val {rec['val_loss']:.4f}")
            self.log.progress(s, f"loss {loss:.3f}")
            if (tc.save_every and s % tc.save_every == 0) or s == end:
                self.save()
        wall = time.perf_counter() - t_run
        n = end - start
        if n > 0 and self.info.is_main:
            self.log.record({"event": "end", "step": self.step, "tokens_per_s": tokens_step * n / wall, "wall_s": wall})
        return TrainResult(self.out, self.step, start, losses, vals, tokens_step * n / wall if n else 0.0,
                           self.last_checkpoint, self.run, self.model)

    def close(self) -> None:
        self.log.close()
        teardown(self.info)


def train(run: RunConfig, out_dir: str | Path | None = None, *, dataset: Any = None, resume: bool = False,
          until_step: int | None = None, progress: bool = True, say: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``run`` (see :class:`Trainer`); ``resume`` continues from the newest checkpoint in
    ``out_dir`` and repeats an uninterrupted run exactly (bit for bit on the CPU)."""
    trainer = Trainer(run, out_dir, dataset=dataset, resume=resume, progress=progress, say=say)
    try:
        return trainer.fit(until_step)
    finally:
        trainer.close()
