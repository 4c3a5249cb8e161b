"""Load-balancing terms: auxiliary losses and the aux-loss-free bias update.

Shapes: B sequences, T tokens per sequence, E experts, K experts per token.

Every loss returns a float32 scalar; the MoE layer multiplies each by its config coefficient and
exposes the sum as ``MoE.aux_loss``.
"""
from __future__ import annotations

import torch


def balance_loss(probs: torch.Tensor, selected: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """E * sum_i f_i P_i per sequence, averaged over sequences.

    probs: [B, T, E] router distribution (softmax, or DeepSeek-V3's normalised sigmoid scores s');
    selected: [B, T, K] chosen experts. f_i = count_i / (T K) is expert i's share of the assignments,
    P_i = mean_t probs[t, i]. Equal to 1 when routing is uniform. With B = 1 over the whole batch
    this is the Switch Transformer loss (Fedus et al. 2021, eq. 4); per sequence it is DeepSeek-V3's
    sequence-wise balance loss (eq. 17-20: there f_i = E count_i / (K T), the same product).
    transformers' ``load_balancing_loss_func`` normalises f by T only, so its value is K times this.
    valid: [B, T] bool (False = padding): T becomes each sequence's real tokens, and sequences with
    none are left out of the mean.
    """
    B, T, E = probs.shape
    K = selected.shape[-1]
    w = torch.ones(B, T, dtype=torch.float32, device=probs.device) if valid is None else valid.float()
    counts = torch.zeros(B, E, dtype=torch.float32, device=probs.device).scatter_add_(
        1, selected.reshape(B, T * K), w[..., None].expand(B, T, K).reshape(B, T * K)
    )  # [B, E]
    n = w.sum(dim=1)  # [B] real tokens per sequence
    f = counts / (n[:, None] * K).clamp_min(1.0)
    P = (probs.float() * w[..., None]).sum(dim=1) / n[:, None].clamp_min(1.0)  # [B, E]
    per_seq = E * (f * P).sum(dim=-1)  # [B]
    return per_seq.mean() if valid is None else per_seq.sum() / (n > 0).sum().clamp_min(1)


def z_loss(logits: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Router z-loss, ST-MoE (Zoph et al. 2022, eq. 5): mean over tokens of logsumexp(logits)^2.
    logits: [N, E]; valid: [N] bool or None (pads left out of the mean)."""
    z = torch.logsumexp(logits.float(), dim=-1).square()
    return z.mean() if valid is None else (z * valid).sum() / valid.sum().clamp_min(1)


@torch.no_grad()
def sign_bias_update(bias: torch.Tensor, load: torch.Tensor, rate: float) -> None:
    """Aux-loss-free balancing (Wang et al. 2024; DeepSeek-V3 sec. 2.1.2): after a step, raise the
    bias of each underloaded expert by ``rate`` and lower each overloaded one by ``rate``.
    bias, load: [E] (load = assignments counted since the last update); updates ``bias`` in place."""
    bias.add_(rate * torch.sign(load.mean() - load))
