"""Next-token cross-entropy through the output head (the LM loss).

    linear_cross_entropy(h, weight, targets, bias=None, *, softcap=None, ignore_index=-100,
                         form="chunked", chunk_size=4096, rows="auto") -> mean loss (float32 scalar)

h [N, C] final hidden states, weight [V, C] the head (or the tied embedding), targets [N].
``form``: "reference" (full float32 logits, then F.cross_entropy) or "chunked" (never holds more
than ``chunk_size`` tokens' logits; the gradients are made in the forward pass). ``rows`` picks how
the chunked form turns each chunk's logits into loss and gradient: "torch" (PyTorch ops),
"triton" (one fused kernel, triton_rows.py) or "auto" (the kernel on CUDA when triton is installed).
"""
from __future__ import annotations

from torch import Tensor

from .chunked import linear_cross_entropy_chunked
from .reference import linear_cross_entropy_reference

FORMS = ("reference", "chunked")


def linear_cross_entropy(h: Tensor, weight: Tensor, targets: Tensor, bias: Tensor | None = None, *,
                         softcap: float | None = None, ignore_index: int = -100, form: str = "chunked",
                         chunk_size: int = 4096, rows: str = "auto") -> Tensor:
    if form not in FORMS:
        raise ValueError(f"form: expected one of {', '.join(FORMS)}, got {form!r}")
    if h.dim() != 2 or weight.dim() != 2 or h.shape[1] != weight.shape[1]:
        raise ValueError(f"h, weight: expected [N, C] and [V, C], got {tuple(h.shape)} and {tuple(weight.shape)}")
    if targets.shape != h.shape[:1]:
        raise ValueError(f"targets: expected shape [{h.shape[0]}], got {tuple(targets.shape)}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size: must be positive, got {chunk_size}")
    if form == "reference":
        return linear_cross_entropy_reference(h, weight, targets, bias, softcap=softcap, ignore_index=ignore_index)
    return linear_cross_entropy_chunked(h, weight, targets, bias, softcap=softcap, ignore_index=ignore_index,
                                        chunk_size=chunk_size, rows=rows)
