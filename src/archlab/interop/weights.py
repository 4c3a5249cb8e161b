"""Streaming weights in and out of safetensors files, without pickles and without a second copy.

Loading builds the model with its parameters on the meta device (no memory), then reads the
files tensor by tensor with ``safetensors.safe_open`` and installs each tensor as the parameter
it belongs to: peak memory is the model plus the largest (fused) tensor, never twice the model.
Buffers that are not saved (RoPE frequencies, ALiBi slopes) are computed normally during the
build. Writing plans shards from tensor sizes first, then materialises one shard at a time.

Files read: ``model.safetensors``, or shards listed by ``model.safetensors.index.json``, or
(without an index) every ``*.safetensors`` file. Pickled ``.bin``/``.pt`` files are refused:
loading them can execute code.
"""
from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from archlab.errors import CheckpointError
from archlab.interop import _deps

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
_SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")


@contextlib.contextmanager
def params_on_meta() -> Iterator[None]:
    """Inside, every parameter a module registers goes to the meta device; buffers stay real.

    (``torch.device("meta")`` would put the computed buffers there too, and they are not in the
    checkpoint.) Patches ``nn.Module.register_parameter`` for the duration: do not build models
    in other threads meanwhile.
    """
    original = nn.Module.register_parameter

    def register(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(self, name, param)

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def build_empty(cfg) -> nn.Module:
    """The model a config describes, parameters on the meta device, computed buffers real."""
    from archlab.model import Model

    with params_on_meta():
        return Model(cfg)


# -- reading ---------------------------------------------------------------------------------
def checkpoint_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint directory, in a stable order."""
    if (path / INDEX).is_file():
        try:
            weight_map = json.loads((path / INDEX).read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path / INDEX}: not a safetensors index (a JSON object with a weight_map): {e}") from None
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not (path / f).is_file()]
        if missing:
            raise CheckpointError(f"{path / INDEX}: lists shards that are missing: {', '.join(missing[:5])}")
        return [path / f for f in files]
    if (path / SINGLE).is_file():
        return [path / SINGLE]
    found = sorted(path.glob("*.safetensors"))
    if found:
        return found
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if pickles:
        raise CheckpointError(
            f"{path}: holds only pickled weights ({', '.join(pickles[:3])}); archlab reads safetensors only, because "
            "loading a pickle can execute code. Convert them once with transformers "
            "(model.save_pretrained(dir), which writes safetensors) in an environment you trust"
        )
    raise CheckpointError(f"{path}: no weights found (expected {SINGLE}, {INDEX} with its shards, or *.safetensors)")


def iter_tensors(path: Path, device: str | torch.device = "cpu") -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every tensor of a checkpoint directory, one at a time."""
    safe_open = _deps.safe_open()
    for f in checkpoint_files(path):
        try:
            with safe_open(str(f), framework="pt", device=str(device)) as fh:
                for key in fh.keys():
                    yield key, fh.get_tensor(key)
        except Exception as e:  # safetensors has its own error type for corrupt files
            raise CheckpointError(f"{f}: cannot read as safetensors ({type(e).__name__}: {e})") from None


def checkpoint_keys(path: Path) -> list[str]:
    """The tensor names of a checkpoint directory, read from the file headers (no tensor data)."""
    safe_open = _deps.safe_open()
    keys: list[str] = []
    for f in checkpoint_files(path):
        try:
            with safe_open(str(f), framework="pt", device="cpu") as fh:
                keys.extend(fh.keys())
        except Exception as e:  # safetensors has its own error type for corrupt files
            raise CheckpointError(f"{f}: cannot read as safetensors ({type(e).__name__}: {e})") from None
    return keys


# -- installing ------------------------------------------------------------------------------
def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    mod_name, _, leaf = name.rpartition(".")
    try:
        mod = model.get_submodule(mod_name) if mod_name else model
    except AttributeError:
        raise CheckpointError(f"{name}: the model has no module {mod_name!r}") from None
    if leaf not in mod._parameters and leaf not in mod._buffers:
        raise CheckpointError(f"{name}: the model has no parameter or buffer {leaf!r} in {mod_name or 'the root'}")
    return mod, leaf


def get_tensor(model: nn.Module, name: str) -> torch.Tensor:
    mod, leaf = _owner(model, name)
    t = mod._parameters.get(leaf)
    return t if t is not None else mod._buffers[leaf]


def install(model: nn.Module, name: str, tensor: torch.Tensor, *, source: str = "", dtype: torch.dtype | None = None,
            device: str | torch.device | None = None) -> None:
    """Make ``tensor`` the parameter (or buffer) ``name``; modules sharing it see it too."""
    mod, leaf = _owner(model, name)
    old = mod._parameters.get(leaf)
    if old is None:
        old = mod._buffers[leaf]
    if tuple(tensor.shape) != tuple(old.shape):
        what = f"{source} -> {name}" if source and source != name else name
        raise CheckpointError(f"{what}: the checkpoint holds shape {tuple(tensor.shape)}, the config gives {tuple(old.shape)}")
    if leaf in getattr(mod, "float32_buffers", ()):
        tensor = tensor.to(torch.float32)  # kept float32 whatever the model's dtype (e.g. a router's bias)
    elif dtype is not None and tensor.is_floating_point():
        tensor = tensor.to(dtype)
    if device is not None:
        tensor = tensor.to(device)
    if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
        tensor = tensor.clone()  # a view into a fused tensor would keep all of it alive
    if leaf in mod._parameters:
        mod._parameters[leaf] = nn.Parameter(tensor, requires_grad=old.requires_grad)
    else:
        mod._buffers[leaf] = tensor


def unmaterialised(model: nn.Module) -> list[str]:
    """Names of parameters and buffers still on the meta device."""
    named = list(model.named_parameters()) + list(model.named_buffers())
    return [n for n, t in named if t.device.type == "meta"]


def canonical_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and saved buffer once (shared modules under their first name)."""
    out = dict(model.named_parameters())
    for mod_name, mod in model.named_modules():
        for leaf, b in mod._buffers.items():
            if b is None or leaf in mod._non_persistent_buffers_set:
                continue
            if not any(b is t for t in out.values()):
                out[f"{mod_name}.{leaf}" if mod_name else leaf] = b
    return out


# -- writing ---------------------------------------------------------------------------------
def parse_size(size: int | str) -> int:
    """'5GB' -> 5e9, '500MB', '2GiB', or an int of bytes."""
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"max_shard_size: must be positive, got {size}")
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)?\s*", str(size), re.IGNORECASE)
    if not m:
        raise ValueError(f"max_shard_size: expected bytes or a size such as 500MB or 5GB, got {size!r}")
    unit = (m.group(2) or "B").upper()
    mult = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
            "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]
    return int(float(m.group(1)) * mult)


Producer = Callable[[], Sequence[tuple[str, torch.Tensor]]]


def write_shards(items: Sequence[tuple[int, Producer]], out_dir: Path, max_shard_bytes: int) -> list[Path]:
    """Write groups of tensors to safetensors shards of at most ``max_shard_bytes`` (a group is never split).

    ``items``: (bytes the group will take, function producing its (name, tensor) pairs). One
    shard is in memory at a time. Old shards of the same naming scheme in ``out_dir`` are removed.
    """
    st = _deps.safetensors_torch("writing safetensors weights")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.iterdir():
        if old.name in (SINGLE, INDEX) or _SHARD.match(old.name):
            old.unlink()
    shards: list[list[Producer]] = [[]]
    sizes = [0]
    for nbytes, produce in items:
        if shards[-1] and sizes[-1] + nbytes > max_shard_bytes:
            shards.append([])
            sizes.append(0)
        shards[-1].append(produce)
        sizes[-1] += nbytes
    n = len(shards)
    names = [SINGLE] if n == 1 else [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]
    weight_map: dict[str, str] = {}
    for fname, group in zip(names, shards):
        tensors: dict[str, torch.Tensor] = {}
        seen: set[int] = set()
        for produce in group:
            for key, t in produce():
                if key in tensors or key in weight_map:
                    raise RuntimeError(f"interop: tensor {key!r} written twice")
                t = t.detach().to("cpu").contiguous()
                if t.untyped_storage().data_ptr() in seen:
                    t = t.clone()  # safetensors refuses tensors sharing memory
                seen.add(t.untyped_storage().data_ptr())
                tensors[key] = t
                weight_map[key] = fname
        st.save_file(tensors, str(out_dir / fname), metadata={"format": "pt"})
        del tensors
    if n > 1:
        index = {"metadata": {"total_size": sum(sizes)}, "weight_map": dict(sorted(weight_map.items()))}
        (out_dir / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return [out_dir / f for f in names]


def tensor_bytes(tensors: Iterable[torch.Tensor], dtype: torch.dtype | None) -> int:
    total = 0
    for t in tensors:
        elem = torch.empty((), dtype=dtype).element_size() if dtype is not None and t.is_floating_point() else t.element_size()
        total += t.numel() * elem
    return total
