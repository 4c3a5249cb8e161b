"""Tensor layouts of fused and transposed checkpoint weights: (load, save) pairs for ``rule``.

Shapes: H heads, D head dim, C model width; ``*rest`` is the input width of a weight or
nothing for a bias.
"""
from __future__ import annotations

import torch


def split_rows(*sizes: int):
    """One fused [sum(sizes), *rest] tensor <-> its row blocks (Phi-3 qkv_proj, gate_up_proj)."""
    return (lambda t: tuple(x.contiguous() for x in t.split(list(sizes), dim=0)),
            lambda *ts: (torch.cat(ts, dim=0),))


def transposed():
    """GPT-2's Conv1D stores [in, out]; nn.Linear holds [out, in]."""
    return (lambda t: (t.t().contiguous(),), lambda t: (t.t().contiguous(),))


def transposed_split(*sizes: int):
    """GPT-2's c_attn: a Conv1D [C, 3C] whose columns are q | k | v."""
    return (lambda t: tuple(x.contiguous() for x in t.t().split(list(sizes), dim=0)),
            lambda *ts: (torch.cat(ts, dim=0).t().contiguous(),))


def per_head_qkv(H: int, D: int):
    """GPT-NeoX/BLOOM query_key_value: rows grouped per head as [H, 3, D] (q_h, k_h, v_h for each head)."""
    return grouped_rows(H, (D, D, D))


def grouped_rows(G: int, sizes: tuple[int, ...]):
    """A fused [G * sum(sizes), *rest] tensor whose rows come in G groups, each holding one block
    of every part <-> the parts, each [G * size, *rest] in group order (Qwen3-Next's q_proj with its
    output gate per head, and in_proj_qkvz / in_proj_ba per key head)."""

    def load(t: torch.Tensor):
        rest = t.shape[1:]
        parts = t.view(G, sum(sizes), *rest).split(list(sizes), dim=1)  # [G, size, *rest] each
        return tuple(x.reshape(G * x.shape[1], *rest).contiguous() for x in parts)

    def save(*parts: torch.Tensor):
        rest = parts[0].shape[1:]
        return (torch.cat([x.view(G, -1, *rest) for x in parts], dim=1).reshape(-1, *rest),)  # [G, sum(sizes), *rest]

    return load, save
