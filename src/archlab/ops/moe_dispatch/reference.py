"""Mixture-of-experts FFN, reference: a loop over experts.

Shapes: N tokens, C model width, E experts, I expert hidden width, G = 2 (gated) or 1,
S (token, expert) assignments.

Shazeer et al. 2017, "Outrageously Large Neural Networks: The Sparsely-Gated Mixture-of-Experts
Layer", eq. 1: y = sum_i G(x)_i E_i(x), summed over the experts a token was routed to. Routing is
given as a flat list of assignments so that token choice (S = N*k), expert choice (S = E*capacity)
and dropped tokens (assignments removed) share one signature.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from archlab.ops.moe_dispatch.common import check_inputs, expert_hidden


def expert_ffn(
    x: torch.Tensor,
    w_in: torch.Tensor,
    w_out: torch.Tensor,
    token_idx: torch.Tensor | None,
    expert_idx: torch.Tensor,
    weight: torch.Tensor,
    *,
    activation: str = "silu",
) -> torch.Tensor:
    """y[t] = sum over assignments s with token_idx[s] = t of weight[s] * FFN_{expert_idx[s]}(x[t]).

    x: [N, C]; w_in: [E, G*I, C] (gated: rows [:I] gate, [I:] up, as transformers' ``gate_up_proj``);
    w_out: [E, C, I]; token_idx, expert_idx: [S] integers; weight: [S] (any float dtype).
    token_idx=None means token-major with k = S / N assignments per token (token choice, no drops):
    token_idx = [0]*k + [1]*k + ...
    FFN_e(x) = w_out[e] @ expert_hidden(w_in[e] @ x). Returns [N, C] in x's dtype, accumulated in at
    least float32. A token with no assignment gets zeros.
    """
    gated = check_inputs(x, w_in, w_out, token_idx, expert_idx, weight, activation, check_range=True)
    acc = torch.promote_types(x.dtype, torch.float32)  # bfloat16 inputs still add up in float32
    out = torch.zeros(x.shape, dtype=acc, device=x.device)
    if token_idx is None:
        token_idx = torch.arange(x.shape[0], device=x.device).repeat_interleave(expert_idx.numel() // x.shape[0])
    for e in range(w_in.shape[0]):
        sel = (expert_idx == e).nonzero().squeeze(1)  # [n_e] the assignments expert e serves
        if sel.numel() == 0:
            continue
        tok = token_idx[sel]
        h = expert_hidden(F.linear(x[tok], w_in[e]), activation, gated)  # [n_e, I]
        y = F.linear(h, w_out[e])  # [n_e, C]
        out = out.index_add(0, tok, y.to(acc) * weight[sel, None].to(acc))
    return out.to(x.dtype)
