"""Model weights as safetensors, checked tensor by tensor on load.

Every parameter and saved buffer is stored once under the model's own name (a tensor shared by
several names, such as a block reused by tied layers, under its first name in ``state_dict``
order), which is the layout of ``archlab.interop``'s native format. Loading names the first
missing, unexpected or mis-shaped tensor; nothing is unpickled.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from archlab.errors import CheckpointError


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError as e:
        raise ImportError("checkpoints need the optional package 'safetensors'; install it with: "
                          "pip install 'archlab[hf]' (or pip install safetensors)") from e
    return st


def tensor_aliases(model: nn.Module) -> dict[str, str]:
    """Name -> first name, for every parameter or buffer reachable under several names (tied blocks)."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    named = list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False))
    for name, t in named:
        if id(t) in first:
            aliases[name] = first[id(t)]
        else:
            first[id(t)] = name
    return aliases


def canonical_state(state: dict[str, torch.Tensor], aliases: dict[str, str] | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors stored once, alias name -> stored name). Aliases come from the model when given
    (``tensor_aliases``), else from shared storage among the (real, unsharded) tensors."""
    if aliases is not None:
        aliases = {a: k for a, k in aliases.items() if a in state and k in state}
        return {k: v for k, v in state.items() if k not in aliases}, aliases
    first: dict[tuple, str] = {}
    kept: dict[str, torch.Tensor] = {}
    found: dict[str, str] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() > 0 and key in first:
            found[name] = first[key]
        else:
            first[key] = name
            kept[name] = t
    return kept, found


def _own_storage(t: torch.Tensor) -> torch.Tensor:
    """safetensors refuses tensors that share memory: a view (e.g. of packed projections) is copied."""
    return t if t.untyped_storage().nbytes() == t.numel() * t.element_size() else t.clone()


def save_weights(state: dict[str, torch.Tensor], path: str | os.PathLike, aliases: dict[str, str] | None = None) -> None:
    """Write a (full, unsharded) state dict to ``path`` as safetensors, shared tensors once."""
    st = _safetensors()
    kept, _ = canonical_state(state, aliases)
    tensors = {k: _own_storage(v.detach().to("cpu").contiguous()) for k, v in kept.items()}
    st.save_file(tensors, str(path), metadata={"format": "pt", "writer": "archlab.train"})


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    st = _safetensors()
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weight file")
    try:
        return st.load_file(str(path), device="cpu")
    except Exception as e:  # a truncated or foreign file: safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def check_weights(loaded: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], where: str,
                  aliases: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """The full state dict for ``expected``'s names built from ``loaded`` (aliases filled in);
    CheckpointError naming the first missing, unexpected or mis-shaped tensor."""
    kept, aliases = canonical_state(expected, aliases)
    missing = [k for k in kept if k not in loaded]
    unexpected = [k for k in loaded if k not in kept and k not in aliases]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{where}: tensor {missing[0]!r} is missing{more}; the checkpoint was saved from "
                              f"a different model config")
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{where}: tensor {unexpected[0]!r} is not in the model{more}; the checkpoint was "
                              f"saved from a different model config")
    for k, t in kept.items():
        got = loaded[k]
        if tuple(got.shape) != tuple(t.shape):
            raise CheckpointError(f"{where}: tensor {k!r} has shape {list(got.shape)} in the checkpoint, "
                                  f"the model expects {list(t.shape)}")
        if got.is_floating_point() != t.is_floating_point():
            raise CheckpointError(f"{where}: tensor {k!r} is {got.dtype} in the checkpoint, the model has {t.dtype}")
    full = {k: loaded[k] for k in kept}
    full.update({a: loaded[k] for a, k in aliases.items()})
    return full


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Copy the weights in ``path`` into ``model`` (an unwrapped, unsharded model), validated by name."""
    state = model.state_dict()
    full = check_weights(read_weights(path), state, str(path), tensor_aliases(model))
    with torch.no_grad():
        for k, t in state.items():
            t.copy_(full[k])
