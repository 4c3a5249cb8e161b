"""Mixture-of-experts pieces every MoE family shares: expert, router and shared-expert weight rules,
the check of the ``moe`` section against what a family expresses, and the layer plan of
dense and sparse layers.

Expert layouts. transformers 5.x holds the routed experts of a layer fused, as its in-memory
state dict shows: ``experts.gate_up_proj`` [E, 2I, C] (gate rows first) and ``experts.down_proj``
[E, C, I], the layout archlab's ``RoutedExperts`` has. Checkpoint files, published ones and those
``save_pretrained`` writes, keep one tensor per expert: ``experts.{e}.gate_proj.weight`` [I, C],
``experts.{e}.up_proj.weight`` [I, C], ``experts.{e}.down_proj.weight`` [C, I] (Mixtral names them
w1, w3, w2), which transformers fuses on load. Reading takes whichever layout the checkpoint holds
(:func:`expert_layout`, per layer); writing uses the per-expert layout, so the files load in any
transformers version and in other tools that read published checkpoints.

Training-only settings have no counterpart and are not carried either way: balancing losses and
their coefficients, router jitter, expert capacity (archlab drops tokens in training only), the
aux-loss-free bias update rate and the dispatch kernel. A converted model computes the same
forward; an imported config has them off.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Collection, Mapping, Sequence

import torch

from archlab.config import LayerPlan, LayerSpec, ModelConfig
from archlab.ffn import FFNConfig
from archlab.interop.base import Rule, Unsupported, rule
from archlab.interop.common import _ok
from archlab.moe.config import MoEConfig

# MoEConfig fields that change only training, never a forward pass in eval mode
TRAINING_ONLY = frozenset({"router_jitter", "capacity_factor", "load_balance_coef", "seq_balance_coef", "z_loss_coef",
                           "bias_update_rate", "dispatch"})
GATED_NAMES = ("gate_proj", "up_proj", "down_proj")  # per-expert tensor names (Mixtral: w1, w3, w2)


# -- weights -----------------------------------------------------------------------------------
def expert_layout(keys: Collection[str], hf_prefix: str) -> str:
    """``"fused"`` when ``keys`` hold ``{hf_prefix}experts.down_proj`` (transformers 5.x in memory),
    else ``"per_expert"`` (checkpoint files)."""
    return "fused" if f"{hf_prefix}experts.down_proj" in keys else "per_expert"


def _stack_experts(E: int, gated: bool):
    """(load, save) between per-expert matrices and our fused [E, G*I, C] input and [E, C, I] output."""

    def load_in(*ts: torch.Tensor):
        if gated:  # ts: gate_0..gate_{E-1}, up_0..up_{E-1}, each [I, C]
            return (torch.stack([torch.cat([ts[e], ts[E + e]], dim=0) for e in range(E)]),)  # [E, 2I, C]
        return (torch.stack(ts),)  # [E, I, C]

    def save_in(w: torch.Tensor):
        if gated:
            gate, up = w.chunk(2, dim=1)  # [E, I, C] each
            return tuple(g.contiguous() for g in gate.unbind(0)) + tuple(u.contiguous() for u in up.unbind(0))
        return tuple(x.contiguous() for x in w.unbind(0))

    load_out = lambda *ts: (torch.stack(ts),)  # noqa: E731  E x [C, I] -> [E, C, I]
    save_out = lambda w: tuple(x.contiguous() for x in w.unbind(0))  # noqa: E731
    return (load_in, save_in), (load_out, save_out)


def expert_rules(hf_prefix: str, ours_prefix: str, num_experts: int, *, layout: str, gated: bool = True,
                 names: Sequence[str] = GATED_NAMES) -> list[Rule]:
    """Routed experts of one layer: ``{hf_prefix}experts...`` <-> ``{ours_prefix}experts.{w_in, down_proj}``.

    ``layout`` is ``"fused"`` or ``"per_expert"`` (:func:`expert_layout`); ``names`` are the
    per-expert (gate, up, down) tensor names; ungated experts have only up and down.
    """
    src, ours = hf_prefix + "experts.", ours_prefix + "experts."
    w_in = ours + ("gate_up_proj" if gated else "up_proj")
    if layout == "fused":
        return [rule(src + ("gate_up_proj" if gated else "up_proj"), w_in), rule(src + "down_proj", ours + "down_proj")]
    if layout != "per_expert":
        raise ValueError(f"layout: expected 'fused' or 'per_expert', got {layout!r}")
    gate, up, down = names
    E = num_experts
    inputs = ([gate] if gated else []) + [up]
    (load_in, save_in), (load_out, save_out) = _stack_experts(E, gated)
    return [
        rule([f"{src}{e}.{n}.weight" for n in inputs for e in range(E)], w_in, load_in, save_in),
        rule([f"{src}{e}.{down}.weight" for e in range(E)], ours + "down_proj", load_out, save_out),
    ]


def router_rules(hf_prefix: str, ours_prefix: str, moe: MoEConfig, gate: str = "gate") -> list[Rule]:
    """The router matrix ``{hf_prefix}{gate}.weight`` [E, C] and, with ``correction_bias``, DeepSeek-V3's
    ``{gate}.e_score_correction_bias`` [E]."""
    out = [rule(f"{hf_prefix}{gate}.weight", ours_prefix + "router.weight")]
    if moe.correction_bias:
        out.append(rule(f"{hf_prefix}{gate}.e_score_correction_bias", ours_prefix + "router.e_score_correction_bias"))
    return out


def shared_rules(hf_prefix: str, ours_prefix: str, moe: MoEConfig, gate: str | None = None) -> list[Rule]:
    """Shared experts as one MLP ``{hf_prefix}{gate,up,down}_proj.weight`` (all shared experts fused:
    their outputs add) and, with ``shared_gate``, the [1, C] sigmoid gate ``gate``."""
    names = ("gate", "up", "down") if moe.gated else ("up", "down")
    out = [rule(f"{hf_prefix}{n}_proj.weight", f"{ours_prefix}shared_experts.{n}_proj.weight") for n in names]
    if moe.shared_gate:
        if gate is None:
            raise ValueError("gate: the checkpoint name of the shared-expert gate is needed when shared_gate is set")
        out.append(rule(gate, ours_prefix + "shared_expert_gate.weight"))
    return out


# -- config ------------------------------------------------------------------------------------
def require_moe(cfg: ModelConfig, family: str, fields: Mapping[str, Any]) -> MoEConfig:
    """Check the ``moe`` section against what a family expresses; returns it.

    ``fields`` maps MoEConfig field names to an accepted value, a tuple of values or an
    ``Accept``; fields not listed keep their default, except the training-only ones. Every MoE
    layer must use the root section (a family has one MoE setting for all layers).
    """
    moe = cfg.moe
    if moe is None:
        raise Unsupported(f"moe: transformers' {family} is a mixture of experts; this config has no moe section")
    for i in range(cfg.n_layers):
        if cfg.layer_config(i).moe != moe:
            raise Unsupported(f"plan: layer {i} overrides moe; transformers' {family} uses one MoE setting for every layer")
    default = MoEConfig(num_experts=1, top_k=1, expert_hidden=1)
    for f in dataclasses.fields(MoEConfig):
        name, value = f.name, getattr(moe, f.name)
        if name in fields:
            ok, words = _ok(value, fields[name])
        elif name in TRAINING_ONLY or name in ("num_experts", "top_k", "expert_hidden"):
            continue
        else:
            ok, words = value == getattr(default, name), f"only {getattr(default, name)!r}"
        if not ok:
            raise Unsupported(f"moe.{name}={value!r} has no counterpart in transformers' {family}, which accepts {words}")
    return moe


def experts_from_hf(hf_act: str) -> dict[str, Any]:
    """MoEConfig's expert_kind/activation for a gated expert with transformers' ``hidden_act``."""
    from archlab.interop.common import activation_from_hf

    act = activation_from_hf(hf_act, "hidden_act")
    return {"expert_kind": "swiglu"} if act == "silu" else {"expert_kind": "geglu", "activation": act}


EXPERT_KINDS = ("swiglu", "geglu")  # gated experts: transformers' MoE families have no other kind


# -- layer plan --------------------------------------------------------------------------------
def sparse_layers(cfg: ModelConfig) -> list[bool]:
    """Per layer: does its FFN slot hold the experts? Layers must be attention + dense or attention + moe."""
    out = []
    for i in range(cfg.n_layers):
        spec = cfg.layer_spec(i)
        if spec.mixer != "attention" or spec.ffn not in ("dense", "moe"):
            raise Unsupported(f"plan: layer {i} is mixer={spec.mixer!r}, ffn={spec.ffn!r}; transformers' MoE families have "
                              "softmax attention and a dense or MoE FFN in every layer")
        out.append(spec.ffn == "moe")
    return out


def dense_view(cfg: ModelConfig, ffn: Any = None) -> ModelConfig:
    """``cfg`` with every FFN slot dense and no moe section (``ffn`` replaces the ffn section when
    given): what a dense family's checks and mapping see, per-layer overrides kept."""
    specs = tuple(dataclasses.replace(s, ffn="dense", set={k: v for k, v in s.set.items() if not k.startswith("moe.")})
                  for s in cfg.plan.specs(cfg.n_layers))
    kw: dict[str, Any] = {"moe": None, "plan": LayerPlan(layers=specs)}
    if ffn is not None:
        kw["ffn"] = ffn
    return dataclasses.replace(cfg, **kw)


def hidden_act_ffn(cfg: ModelConfig, moe: MoEConfig, sparse: Sequence[bool], family: str,
                   dense_hidden: int | None = None) -> FFNConfig:
    """The FFN section a dense family's mapping sees: transformers' MoE families have one ``hidden_act``
    for dense layers and experts. Without dense layers it is the experts' (of width ``dense_hidden``,
    default the config's ffn.hidden); with them, the dense FFN must use the experts' activation."""
    if moe.expert_kind not in EXPERT_KINDS:
        raise Unsupported(f"moe.expert_kind={moe.expert_kind!r} has no counterpart in transformers' {family}, "
                          f"which accepts {' or '.join(map(repr, EXPERT_KINDS))}")
    if all(sparse) or dense_hidden is not None:
        hidden = dense_hidden if dense_hidden is not None else cfg.ffn.hidden_size(cfg.d_model)
        return FFNConfig(kind=moe.expert_kind, hidden=hidden, activation=moe.activation)
    if cfg.ffn.kind not in EXPERT_KINDS or cfg.ffn.act() != moe.act():
        raise Unsupported(f"ffn.kind={cfg.ffn.kind!r} with activation {cfg.ffn.act()!r}: transformers' {family} has one "
                          f"hidden_act for dense layers and experts, here {moe.expert_kind} experts with {moe.act()!r}")
    return cfg.ffn


def layer_plan(sparse: Sequence[bool], windows: Sequence[int | None]) -> tuple[int | None, LayerPlan]:
    """Per-layer (MoE or dense FFN, sliding window) -> (root attention.window, layer plan) as the
    shortest repeating pattern: ``A`` dense, ``E`` MoE, ``S``/``W`` the same with the window."""
    uniform = len(set(windows)) == 1
    root = windows[0] if uniform else None
    letters: dict[str, LayerSpec] = {}
    code = []
    for moe, w in zip(sparse, windows):
        if uniform or w is None:
            code.append("E" if moe else "A")
        else:
            ch = "W" if moe else "S"
            letters[ch] = LayerSpec(ffn="moe" if moe else "dense", set={"attention.window": w})
            code.append(ch)
    n = len(code)
    period = next(p for p in range(1, n + 1) if n % p == 0 and code[:p] * (n // p) == code)
    return root, LayerPlan(pattern="".join(code[:period]), letters=letters)
