"""Packed projections: Linear layers that read the same input, run as one matrix product.

At batch 1 a decode step is a chain of matrix-vector products. Each is bound by reading its
weight once, and the small ones (the key and value projections of a GQA layer: 2 MB each in a
1B model) by launch latency instead: on an H200 they took as long as the 8 MB query projection.
``PackedLinears`` copies the weights (and biases) of such layers into one contiguous tensor and
makes each layer's parameter a view of its rows, so parameters, state dict, optimiser and
``load_state_dict`` see no difference, and ``outputs(x)`` computes every layer's output with one
matmul over the packed rows. With gradients on, the layers run one by one (a view of the packed
tensor would route the gradient to one parameter only).

A module that packs owns its ``PackedLinears`` through ``PackedMixin``: moving or casting the
module (``.to()``, ``.cuda()``, ``.half()``) replaces the parameters and drops the packing, and a
parameter replaced by assignment is noticed on the next call outside torch.compile.
"""
from __future__ import annotations

import torch
from torch import nn


class PackedLinears:
    def __init__(self, linears: list[nn.Linear]):
        self.linears = linears
        self.sizes = [m.out_features for m in linears]
        has_bias = [m.bias is not None for m in linears]
        if any(has_bias) and not all(has_bias):
            raise ValueError("PackedLinears: the layers must all have a bias or all have none")
        with torch.no_grad():
            self.weight = torch.cat([m.weight.detach() for m in linears])  # [sum out, in]
            self.bias = torch.cat([m.bias.detach() for m in linears]) if all(has_bias) else None  # [sum out]
            rows = 0
            for m, n in zip(linears, self.sizes):
                m.weight.data = self.weight[rows:rows + n]
                if self.bias is not None:
                    m.bias.data = self.bias[rows:rows + n]
                rows += n

    def current(self) -> bool:
        """Every layer's parameters are still the views made at packing (host-side pointer check)."""
        rows, w_elem = 0, self.weight.element_size()
        for m, n in zip(self.linears, self.sizes):
            if m.weight.data_ptr() != self.weight.data_ptr() + rows * self.weight.shape[1] * w_elem:
                return False
            if self.bias is not None and m.bias.data_ptr() != self.bias.data_ptr() + rows * self.bias.element_size():
                return False
            rows += n
        return True

    def outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's output on x [..., in]; one matmul when gradients are off."""
        if torch.is_grad_enabled():
            return [m(x) for m in self.linears]
        y = nn.functional.linear(x, self.weight, self.bias)  # [..., sum out]
        return list(y.split(self.sizes, dim=-1))


class PackedMixin:
    """For an nn.Module that can pack some of its Linear layers (``self._packed``)."""

    _packed: PackedLinears | None = None

    def _packed_layers(self) -> list[nn.Linear]:
        raise NotImplementedError

    def pack_projections(self) -> None:
        """Pack the layers that share an input (see the module docstring)."""
        self._packed = PackedLinears(self._packed_layers())

    def _project(self, x: torch.Tensor) -> list[torch.Tensor]:
        p = self._packed
        if p is not None and not torch.compiler.is_compiling() and not p.current():
            self._packed = p = None  # a parameter was replaced: run the layers one by one
        return p.outputs(x) if p is not None else [m(x) for m in self._packed_layers()]

    def _apply(self, fn, recurse=True):
        self._packed = None  # new parameter tensors: the views are gone
        return super()._apply(fn, recurse)


def pack_projections(model: nn.Module) -> int:
    """Pack every module of the model that can; returns how many did."""
    n = 0
    for m in model.modules():
        if isinstance(m, PackedMixin):
            m.pack_projections()
            n += 1
    return n
