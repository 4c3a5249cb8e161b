"""Config pieces shared by the families: activations, per-layer windows, and the checks that
say which archlab components a family can express (RoPE settings are in ``interop.rope``).

Reading a transformers config uses ``getattr`` with the family's defaults, so configs read
from ``config.json`` and in-memory ones work alike.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

from archlab.config import LAYER_SECTIONS, LayerPlan, LayerSpec, ModelConfig
from archlab.interop.base import Unsupported

# transformers activation names -> ours; the tanh forms differ only in float rounding
ACT_FROM_HF = {
    "silu": "silu", "swish": "silu", "gelu": "gelu", "relu": "relu",
    "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
}


def activation_from_hf(name: str, field: str) -> str:
    if name not in ACT_FROM_HF:
        raise Unsupported(f"{field}: activation {name!r} has no archlab counterpart; accepted: {', '.join(ACT_FROM_HF)}")
    return ACT_FROM_HF[name]


class Accept:
    """A predicate with the words that describe what it accepts (for error messages)."""

    def __init__(self, pred: Callable[[Any], bool], words: str):
        self.pred, self.words = pred, words


ANY = Accept(lambda v: True, "any value")

# root fields every family maps itself; any other root field (a future section) must keep its default
HANDLED_ROOT = {"vocab_size", "d_model", "n_layers", "attention", "position", "ffn", "norm", "plan",
                "tie_embeddings", "init_std", "name"}
# sections whose every field is checked: a field a family does not list must keep its default
STRICT_SECTIONS = ("attention", "ffn", "norm")
# how, not what, is computed: kernels, and how an inference cache stores keys (the weights and a
# full forward are the same)
FREE = {"attention.backend", "attention.cache_dtype"}


def _ok(value: Any, allowed: Any) -> tuple[bool, str]:
    if isinstance(allowed, Accept):
        return bool(allowed.pred(value)), allowed.words
    if isinstance(allowed, (tuple, frozenset, set)):
        return value in allowed, " or ".join(repr(a) for a in allowed)
    return value == allowed, repr(allowed)


def _defaults() -> dict[str, Any]:
    import dataclasses

    out: dict[str, Any] = {}
    for f in dataclasses.fields(ModelConfig):
        if f.name in STRICT_SECTIONS:
            out.update(_fields_of(f.name, f.default_factory()))  # type: ignore[misc]
        elif f.name not in HANDLED_ROOT:
            out[f.name] = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return out


def require(cfg: ModelConfig, family: str, fields: Mapping[str, Any]) -> None:
    """Check every layer's config against what a family can express.

    ``fields`` maps dotted names to an accepted value, a tuple of values or an :class:`Accept`.
    Fields of the attention/ffn/norm sections and root fields that ``fields`` does not list must
    keep their defaults, so a component added to archlab later is refused until a family maps it.
    """
    defaults = _defaults()
    for i in range(cfg.n_layers):
        lc = cfg.layer_config(i)
        flat = {k: v for s in STRICT_SECTIONS for k, v in _fields_of(s, getattr(lc, s)).items()}
        flat.update({k: getattr(lc, k) for k in defaults if "." not in k})
        keys = list(fields) + [k for k in flat if k not in fields and k not in FREE]
        for key in keys:
            value = flat[key] if key in flat else lc.get(key)
            if key in fields:
                ok, words = _ok(value, fields[key])
            else:
                ok, words = value == defaults[key], f"only {defaults[key]!r}"
            if not ok:
                where = f" (layer {i})" if lc is not cfg else ""
                shown = "set" if hasattr(value, "to_dict") else repr(value)
                raise Unsupported(f"{key}={shown}{where} has no counterpart in transformers' {family}, which accepts {words}")


def _fields_of(section: str, cfg: Any) -> dict[str, Any]:
    """A section's own fields as dotted names; a nested section stays one value (compared whole)."""
    import dataclasses

    return {f"{section}.{f.name}": getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init}


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _sections(cfg: ModelConfig) -> dict[str, Any]:
    """The per-layer sections flattened to dotted names (an unset optional section is None)."""
    return _flat({s: (getattr(cfg, s).to_dict() if getattr(cfg, s) is not None else None) for s in LAYER_SECTIONS})


def uniform_layers(cfg: ModelConfig, family: str, allow: Iterable[str] = ()) -> None:
    """Every layer is softmax attention + dense FFN with its own weights, and layers differ only in
    the ``allow`` fields."""
    allow = set(allow)
    root = _sections(cfg)
    for i in range(cfg.n_layers):
        spec = cfg.layer_spec(i)
        if spec.mixer != "attention" or spec.ffn != "dense":
            raise Unsupported(
                f"plan: layer {i} is mixer={spec.mixer!r}, ffn={spec.ffn!r}; transformers' {family} "
                "has softmax attention and a dense FFN in every layer"
            )
        if getattr(spec, "tie", None) is not None:
            raise Unsupported(
                f"plan: layer {i} shares its block's weights (tie={spec.tie!r}); transformers' {family} "
                "has no weight sharing between layers"
            )
        lc = cfg.layer_config(i)
        if lc is cfg:
            continue
        here = _sections(lc)
        diff = sorted(k for k in set(root) | set(here) if here.get(k) != root.get(k) and k not in allow | FREE)
        if diff:
            raise Unsupported(
                f"plan: layer {i} overrides {', '.join(diff)}; transformers' {family} uses one setting for every layer"
                + (f" (only {', '.join(sorted(allow))} may vary)" if allow else "")
            )


def same_as_qkv_bias(cfg: ModelConfig) -> Accept:
    """attention.out_bias for families with one attention_bias switch for q, k, v and o."""
    b = cfg.attention.qkv_bias
    return Accept(lambda v: v == b, f"only the same as attention.qkv_bias ({b}: one attention_bias switch)")


def check_scale(cfg: ModelConfig, family: str) -> None:
    """attention.scale must be the default 1/sqrt(head_dim) (families without a query scale)."""
    a = cfg.attention
    if a.scale is not None and not math.isclose(a.scale, a.dim(cfg.d_model) ** -0.5, rel_tol=1e-12):
        raise Unsupported(
            f"attention.scale={a.scale} has no counterpart in transformers' {family}, "
            f"which scales logits by 1/sqrt(head_dim) = {a.dim(cfg.d_model) ** -0.5}"
        )


def check_head_dim(cfg: ModelConfig, family: str) -> None:
    a = cfg.attention
    if cfg.d_model % a.heads or a.dim(cfg.d_model) != cfg.d_model // a.heads:
        raise Unsupported(
            f"attention.head_dim={a.head_dim} has no counterpart in transformers' {family}, "
            f"whose head width is d_model / heads"
        )


def check_kv_heads(cfg: ModelConfig, family: str) -> None:
    if cfg.attention.n_kv != cfg.attention.heads:
        raise Unsupported(
            f"attention.kv_heads={cfg.attention.kv_heads} has no counterpart in transformers' {family}, "
            "which has one key/value head per query head (MHA)"
        )


# -- per-layer sliding windows --------------------------------------------------------------
def layer_windows(cfg: ModelConfig) -> list[int | None]:
    return [cfg.layer_config(i).attention.window for i in range(cfg.n_layers)]


def one_window(cfg: ModelConfig, family: str) -> int | None:
    """The single sliding window of a family without per-layer types (None, or the same W everywhere)."""
    ws = set(layer_windows(cfg))
    if len(ws) > 1:
        raise Unsupported(
            f"attention.window differs between layers ({', '.join(map(str, ws))}); transformers' {family} "
            "has one sliding_window for all layers"
        )
    return ws.pop()


def layer_types(cfg: ModelConfig, family: str) -> tuple[list[str], int | None]:
    """transformers' ``layer_types`` (sliding_attention/full_attention) and the one sliding window."""
    ws = layer_windows(cfg)
    sizes = {w for w in ws if w is not None}
    if len(sizes) > 1:
        raise Unsupported(
            f"attention.window takes several sizes ({sorted(sizes)}); transformers' {family} has one sliding_window"
        )
    return ["full_attention" if w is None else "sliding_attention" for w in ws], (sizes.pop() if sizes else None)


def windows_plan(windows: list[int | None]) -> tuple[int | None, LayerPlan]:
    """Per-layer windows -> (root attention.window, layer plan): ``A`` full layers, ``S`` sliding ones,
    as the shortest repeating pattern."""
    if len(set(windows)) == 1:
        return windows[0], LayerPlan()
    w = next(x for x in windows if x is not None)
    letters = "".join("A" if x is None else "S" for x in windows)
    n = len(letters)
    period = next(p for p in range(1, n + 1) if n % p == 0 and letters[:p] * (n // p) == letters)
    return None, LayerPlan(pattern=letters[:period], letters={"S": LayerSpec(set={"attention.window": w})})


def windows_from_layer_types(hf: Any, n_layers: int) -> list[int | None]:
    """Per-layer windows from ``layer_types`` + ``sliding_window`` (None entries = full attention)."""
    w = getattr(hf, "sliding_window", None)
    types = getattr(hf, "layer_types", None)
    if types is None:
        return [w] * n_layers
    unknown = sorted(set(types) - {"full_attention", "sliding_attention"})
    if unknown:
        raise Unsupported(f"layer_types: {', '.join(unknown)} has no archlab counterpart; accepted: full_attention, sliding_attention")
    return [w if t == "sliding_attention" else None for t in types]
