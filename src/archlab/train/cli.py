"""The ``archlab train`` and ``archlab generate`` commands (registered by ``archlab.cli``).

    archlab train PRESET_OR_CONFIG [--set key=value ...] [--data stdlib|PATH] [--tokenizer byte|bpe:8192]
                  [--steps N] [--out DIR] [--resume]
    torchrun --nproc_per_node 2 -m archlab.cli train ...      # DDP (or --set distributed=fsdp)
    archlab generate RUN_DIR --prompt TEXT [--prompt TEXT ...]   # several: one left-padded batch

``--set`` keys go to the training config (``lr=1e-3``, ``data.max_docs=100``) or the model
(``attention.kv_heads=1``) by their first part; ``train.``/``model.`` prefixes are explicit.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_commands(sub: Any) -> None:
    p = sub.add_parser("train", help="train a preset or config on a corpus (resumable; torchrun for several processes)")
    p.add_argument("config", help="preset name, a model or run config (.json/.yaml), or a run folder to retrain")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override of the training config (lr=1e-3) or the model (attention.kv_heads=1)")
    p.add_argument("--data", default=None, metavar="SPEC", help="corpus: stdlib (default), a path, text:PATH, jsonl:PATH...")
    p.add_argument("--tokenizer", default=None, metavar="SPEC", help="byte (default), bpe:8192, hf:PATH")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default 300)")
    p.add_argument("--out", default=None, metavar="DIR", help="run folder (default runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out, with its saved config")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("generate", help="stream text from a trained run")
    p.add_argument("run", metavar="RUN_DIR", help="a run folder (its newest checkpoint) or a checkpoint folder")
    p.add_argument("--prompt", required=True, action="append",
                   help="text to continue; repeat it to continue several texts as one batch (left-padded)")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.set_defaults(fn=cmd_generate)


def load_run_config(spec: str):
    """A RunConfig from a preset name, a model config file, a run config file or a run folder."""
    from archlab import presets
    from archlab.config import ModelConfig
    from archlab.errors import ConfigError
    from archlab.train.config import RunConfig

    path = Path(spec)
    if path.is_dir():
        if not (path / "run.json").is_file():
            raise ConfigError(f"{spec}: a folder, but not a run folder (no run.json)")
        return RunConfig.from_json(path / "run.json")
    if path.suffix in (".json", ".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{spec}: no such config file")
        import yaml

        text = path.read_text()
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as e:
            raise ConfigError(f"{spec}: cannot be read ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{spec}: expected a mapping (a model config, or a run config with model and train)")
        if "model" in data and isinstance(data["model"], dict):
            return RunConfig.from_dict(data)
        return RunConfig(model=ModelConfig.from_dict(data))
    return RunConfig(model=presets.get(spec))


def resolve_cli_run(args: argparse.Namespace):
    """(RunConfig, out folder) from the command line; with --resume the run's saved config is the base."""
    from archlab.cli import parse_sets
    from archlab.train.config import RunConfig, split_overrides

    sets = split_overrides(parse_sets(args.set))
    if args.data is not None:
        sets["train.data.corpus"] = args.data
    if args.tokenizer is not None:
        sets["train.data.tokenizer"] = args.tokenizer
    if args.steps is not None:
        sets["train.steps"] = args.steps
    run = None
    out = Path(args.out) if args.out else None
    if args.resume and out is not None and (out / "run.json").is_file():
        run = RunConfig.from_json(out / "run.json")
        if sets:
            print(f"resume: applying {', '.join(sorted(sets))} to the saved config of {out}", flush=True)
    if run is None:
        run = load_run_config(args.config)
    if out is None:
        name = run.model.name or Path(args.config).stem
        out = Path("runs") / name
    return (run.replace(**sets) if sets else run), out


def cmd_train(args: argparse.Namespace) -> int:
    from archlab.train.loop import NonFiniteLossError, train

    run, out = resolve_cli_run(args)
    try:
        result = train(run, out, resume=args.resume, progress=not args.no_progress)
    except NonFiniteLossError as e:
        print(f"archlab: error: {e}", file=sys.stderr)
        return 1
    import os

    if os.environ.get("RANK", "0") == "0" and result.losses:  # one line, from the main process
        val = result.val_losses.get(result.step)
        tail = f", validation loss {val:.4f}" if val is not None else ""
        where = f"; checkpoint {result.last_checkpoint}" if result.last_checkpoint is not None else ""
        print(f"done: step {result.step}{tail}, {result.tokens_per_s:,.0f} tokens/s{where}", flush=True)
    return 0


class _Streamer:
    """Prints decoded text as tokens arrive, holding back an incomplete UTF-8 character."""

    def __init__(self, tokenizer, prompt_ids: list[int]):
        self.tok = tokenizer
        self.ids = list(prompt_ids)
        self.printed = len(tokenizer.decode(self.ids))

    def __call__(self, col) -> None:
        self.ids.append(int(col[0]))
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd"):
            return  # wait for the rest of a multi-byte character
        sys.stdout.write(text[self.printed:])
        sys.stdout.flush()
        self.printed = len(text)


def cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from archlab.errors import ConfigError
    from archlab.generation import generate
    from archlab.train.run import load_run

    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens: must be >= 1, got {args.max_new_tokens}")
    loaded = load_run(args.run, device=args.device)
    tok = loaded.tokenizer
    if tok is None:
        raise ConfigError(f"{args.run}: the run saved no tokenizer, so text cannot be encoded")
    prompts = [tok.encode(p) for p in args.prompt]
    if not all(prompts):
        raise ConfigError("--prompt: encodes to no tokens; give some text")
    device = next(loaded.model.parameters()).device
    kw = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
              eos_id=getattr(tok, "eos_id", None))
    if len(prompts) == 1:  # streamed as it is generated
        x = torch.tensor(prompts, dtype=torch.long, device=device)
        sys.stdout.write(args.prompt[0])
        generate(loaded.model, x, args.max_new_tokens, stream=_Streamer(tok, prompts[0]), **kw)
        sys.stdout.write("\n")
        return 0
    out = generate(loaded.model, prompts, args.max_new_tokens, **kw)  # one batch, left-padded
    width = max(len(p) for p in prompts)
    for i, (text, row) in enumerate(zip(args.prompt, out[:, width:].tolist())):
        if kw["eos_id"] is not None and kw["eos_id"] in row:
            row = row[: row.index(kw["eos_id"])]
        sys.stdout.write(("\n" if i else "") + text + tok.decode(row) + "\n")
    return 0
