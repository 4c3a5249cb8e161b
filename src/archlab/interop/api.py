"""from_hf / to_hf: transformers models and checkpoints <-> archlab models.

``from_hf(model_or_dir)`` returns an archlab :class:`~archlab.model.Model`; its config is
``model.cfg``. A directory is read as config.json plus safetensors weights, streamed tensor by
tensor into a model whose parameters start on the meta device; nothing is unpickled, no code
from the directory runs and the network is never used (only transformers' own config class of the
family is called, on the parsed JSON).

``to_hf(model, out_dir)`` writes config.json and safetensors weights that
``transformers.AutoModelForCausalLM.from_pretrained(out_dir)`` loads to the same logits. The
family is the first (by ``Family.priority``) that can express the config, or the one named by
``model_type``; a config no family can express raises :class:`Unsupported` listing, per family,
the component that has no counterpart.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from archlab.config import ModelConfig
from archlab.errors import CheckpointError
from archlab.interop import _deps, fp8
from archlab.interop.base import Family, Unsupported, family, load_families
from archlab.interop.weights import (
    build_empty, canonical_tensors, checkpoint_keys, get_tensor, install, iter_tensors, parse_size, tensor_bytes,
    unmaterialised, write_shards,
)
from archlab.model import Model

TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id")


# -- configs ---------------------------------------------------------------------------------
def from_hf_config(hf_config: Any) -> ModelConfig:
    """A transformers config (object) -> the archlab ModelConfig of the same architecture."""
    model_type = getattr(hf_config, "model_type", None)
    if not model_type:
        raise Unsupported(f"from_hf_config: expected a transformers config with a model_type, got {type(hf_config).__name__}")
    return family(model_type).config_from_hf(hf_config)


def pick_family(cfg: ModelConfig, model_type: str | None = None) -> Family:
    """The family that will express ``cfg``: the one named, or the first by priority that can."""
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"expected an archlab.ModelConfig, got {type(cfg).__name__}")
    if model_type is not None:
        fam = family(model_type)
        fam.config_to_hf(cfg)
        return fam
    reasons = []
    reg = load_families()
    for fam in sorted((reg.get(n) for n in reg.names()), key=lambda f: (f.priority, f.model_type)):
        try:
            fam.config_to_hf(cfg)
            return fam
        except Unsupported as e:
            reasons.append(f"  {fam.model_type}: {e}")
    raise Unsupported("to_hf: no transformers family that archlab.interop supports expresses this config:\n" + "\n".join(reasons))


def _config_class(tf, model_type: str) -> type:
    """transformers' own config class for ``model_type``.

    Not ``AutoConfig.for_model``: other packages re-register model types there on import
    (flash-linear-attention registers its own "mamba2" config), and AutoConfig then returns theirs.
    transformers' built-in name table is left as shipped; AutoConfig is the fallback for a type it lacks.
    """
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        cls = getattr(tf, CONFIG_MAPPING_NAMES[model_type], None)
    except (ImportError, KeyError):
        cls = None
    return cls if cls is not None else type(tf.AutoConfig.for_model(model_type))


def _fields(cls: type) -> set[str]:
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    return names | set(getattr(cls, "attribute_map", {}))


def to_hf_config(cfg: ModelConfig, model_type: str | None = None, **overrides: Any):
    """The transformers config (a ``PretrainedConfig``) of the family that expresses ``cfg``.

    ``overrides`` set further fields of the transformers config (token ids, for instance); the
    family's defaults for pad/bos/eos ids that fall outside ``cfg.vocab_size`` become None.
    """
    tf = _deps.transformers("to_hf_config")
    fam = pick_family(cfg, model_type)
    kw = fam.config_to_hf(cfg)
    config_class = _config_class(tf, fam.model_type)
    default = config_class()
    for name in TOKEN_IDS:
        value = getattr(default, name, None)
        if isinstance(value, int) and value >= cfg.vocab_size:
            kw[name] = None
        elif isinstance(value, list) and any(v >= cfg.vocab_size for v in value):
            kw[name] = [v for v in value if v < cfg.vocab_size] or None
    kw.update(overrides)
    known = _fields(config_class) | set(fam.config_fields)
    if known:
        unknown = sorted(k for k in kw if k not in known)
        if unknown:  # transformers would store them silently and ignore them
            raise Unsupported(f"to_hf_config: transformers' {fam.model_type} config has no field {', '.join(unknown)}")
    hf = config_class(**kw)
    hf.architectures = [fam.architecture]
    return hf


SPECIAL_FLOATS = {"Infinity": float("inf"), "-Infinity": float("-inf"), "NaN": float("nan")}


def _special_float(obj: dict) -> Any:
    """transformers 5 writes inf and nan as {"__float__": "Infinity"}: plain JSON has no such numbers."""
    if set(obj) == {"__float__"} and obj["__float__"] in SPECIAL_FLOATS:
        return SPECIAL_FLOATS[obj["__float__"]]
    return obj


def read_hf_config(path: Path):
    """config.json of a transformers checkpoint directory -> its transformers config (no code, no network)."""
    f = path / "config.json"
    if not f.is_file():
        raise CheckpointError(f"{path}: no config.json (expected a transformers checkpoint directory)")
    try:
        data = json.loads(f.read_text(), object_hook=_special_float)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{f}: not valid JSON ({e})") from None
    model_type = data.pop("model_type", None) if isinstance(data, dict) else None
    if not model_type:
        raise CheckpointError(f"{f}: has no model_type")
    family(model_type)  # unsupported families fail before transformers is imported
    data.pop("auto_map", None)  # remote code is never run
    tf = _deps.transformers("from_hf")
    return _config_class(tf, model_type)(**data)


# -- weights ---------------------------------------------------------------------------------
def _load_rules(model: Model, fam: Family, source: Iterable[tuple[str, torch.Tensor]], keys: Iterable[str], *,
                dtype: torch.dtype | None, device) -> None:
    cfg = model.cfg
    rules = fam.load_rules(cfg, {fam.canonical(k) for k in keys})
    by_key = {k: r for r in rules for k in r.hf}
    waiting: dict[int, dict[str, torch.Tensor]] = {}  # rules with several checkpoint tensors, partly read
    done: set[int] = set()
    unexpected: list[str] = []
    for raw, tensor in source:
        key = fam.canonical(raw)
        r = by_key.get(key)
        if r is None:
            if not fam.ignored(key, cfg):
                unexpected.append(raw)
            continue
        got = waiting.setdefault(id(r), {})
        got[key] = tensor
        if len(got) < len(r.hf):
            continue
        del waiting[id(r)]
        for name, t in zip(r.ours, r.to_ours([got[k] for k in r.hf])):
            install(model, name, t, source=key, dtype=dtype, device=device)
        done.add(id(r))
    missing = [k for r in rules if id(r) not in done for k in r.hf]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s): {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s): {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}")
        raise CheckpointError(f"checkpoint does not match transformers' {fam.model_type} layout for this config: " + "; ".join(parts))
    left = unmaterialised(model)
    if left:  # a family whose rules miss a parameter
        raise CheckpointError(f"{fam.model_type}: no checkpoint tensor fills {', '.join(left[:8])}")


def _finish(model: Model, device) -> Model:
    if device is not None:
        model.to(device)  # computed buffers; parameters are already there
    return model


def from_hf(model_or_dir: Any, *, dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> Model:
    """A transformers causal LM (in memory) or a local checkpoint directory -> an archlab Model.

    Returns the model; its config is ``model.cfg``. Weights are copied (an in-memory source is
    left untouched); ``dtype`` casts floating tensors (default: keep the checkpoint's),
    ``device`` places them. Block-quantized FP8 weights (DeepSeek-V3's published checkpoints) are
    dequantized on load, to ``dtype`` or bfloat16 (see interop/fp8.py).
    """
    if isinstance(model_or_dir, (str, os.PathLike)):
        path = Path(model_or_dir)
        if not path.is_dir():
            raise CheckpointError(f"{path}: not a directory (expected config.json and safetensors weights)")
        hf_config = read_hf_config(path)
        source: Iterator[tuple[str, torch.Tensor]] = iter_tensors(path)
        keys: Iterable[str] = checkpoint_keys(path)
    elif hasattr(model_or_dir, "config") and hasattr(model_or_dir, "state_dict"):
        hf_config = model_or_dir.config
        state = model_or_dir.state_dict()
        source = ((k, v.detach().clone()) for k, v in state.items())
        keys = state.keys()
    else:
        raise TypeError(f"from_hf: expected a transformers model or a directory path, got {type(model_or_dir).__name__}")
    fam = family(getattr(hf_config, "model_type", ""))
    cfg = fam.config_from_hf(hf_config)
    keys, source = fp8.for_loading(hf_config, keys, source, dtype)  # block-quantized FP8 weights dequantized
    model = build_empty(cfg)
    _load_rules(model, fam, source, keys, dtype=dtype, device=device)
    return _finish(model, device)


def to_hf(model: Model, out_dir: str | os.PathLike, *, model_type: str | None = None, dtype: torch.dtype | None = None,
          max_shard_size: int | str = "5GB", **config_overrides: Any) -> Path:
    """Write ``model`` as a transformers checkpoint: config.json + safetensors (sharded past max_shard_size).

    ``model_type`` picks the family (default: the first that can express the config);
    ``config_overrides`` set fields of the transformers config (e.g. ``eos_token_id=2``).
    Returns the directory.
    """
    if not isinstance(model, Model):
        raise TypeError(f"to_hf: expected an archlab Model, got {type(model).__name__}")
    cfg = model.cfg
    hf = to_hf_config(cfg, model_type, **config_overrides)
    fam = family(hf.model_type)
    rules = fam.rules(cfg)
    covered = {id(get_tensor(model, n)) for r in rules for n in r.ours}
    left = [n for n, t in canonical_tensors(model).items() if id(t) not in covered]
    if left:
        raise Unsupported(f"to_hf: parameters with no counterpart in transformers' {fam.model_type}: {', '.join(left[:8])}")
    out = Path(out_dir)

    def producer(r):
        def produce():
            ours = [get_tensor(model, n).detach() for n in r.ours]
            if dtype is not None:
                ours = [t.to(dtype) if t.is_floating_point() else t for t in ours]
            return list(zip(r.hf, r.to_hf(ours)))
        return produce

    items = [(tensor_bytes([get_tensor(model, n) for n in r.ours], dtype), producer(r)) for r in rules]
    with torch.no_grad():
        write_shards(items, out, parse_size(max_shard_size))
    hf.dtype = dtype or model.lm_head_weight.dtype
    hf.save_pretrained(str(out))
    return out
