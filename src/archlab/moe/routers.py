"""Routers: which experts each token goes to, and with what weight.

Shapes: N tokens (batch and time flattened), C model width, E experts, K experts per token,
G groups, S (token, expert) assignments.

Every router returns a :class:`Routing`: flat assignments (token, expert, weight) that the
dispatch op consumes, plus the router distribution and the loads that the balancing losses and
statistics need. Router scores are computed in float32 whatever the model dtype (the "selective
precision" of ST-MoE, Zoph et al. 2022: the softmax and top-k are sensitive to rounding).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from archlab.moe.capacity import expert_capacity, keep_within_capacity
from archlab.moe.config import MoEConfig
from archlab.registry import Registry


@dataclass
class Routing:
    token_idx: torch.Tensor | None  # [S] the token each assignment reads and writes; None = token-major,
    #                                 top_k per token (lets the dispatch skip atomic scatter-adds)
    expert_idx: torch.Tensor  # [S]
    weight: torch.Tensor  # [S] float32, differentiable where the router is learned
    counts: torch.Tensor  # [E] float32 assignments per expert as routed, before any capacity drop
    dropped_fraction: torch.Tensor  # scalar: token choice, share of the N*K assignments dropped;
    #                                 expert choice, share of tokens that no expert took
    probs: torch.Tensor | None = None  # [N, E] float32 router distribution (losses, entropy)
    logits: torch.Tensor | None = None  # [N, E] float32 (z-loss)
    selected: torch.Tensor | None = None  # [N, K] token-choice picks before capacity (balance losses)


RouteFn = Callable[["Router", torch.Tensor, "torch.Tensor | None"], Routing]
ROUTERS: Registry[RouteFn] = Registry("moe.router")


class Router(nn.Module):
    """Holds the router weight ``weight`` [E, C] (none for hash routing) and, when
    ``correction_bias`` is set, the float32 buffer ``e_score_correction_bias`` [E] (DeepSeek-V3's
    name), which is added to the scores for choosing experts but never to the weights."""

    def __init__(self, cfg: MoEConfig, d_model: int, layer_idx: int = 0):
        super().__init__()
        self.cfg, self.layer_idx = cfg, layer_idx
        self.route_fn = ROUTERS.get(cfg.router)
        if cfg.router != "hash":
            self.weight = nn.Parameter(torch.empty(cfg.num_experts, d_model))
        if cfg.correction_bias:
            self.register_buffer("e_score_correction_bias", torch.zeros(cfg.num_experts, dtype=torch.float32))

    def _apply(self, fn, recurse=True):
        # model.to(bfloat16) must not round the bias: its aux-loss-free updates are ~1e-3 steps
        old = self._buffers.get("e_score_correction_bias")
        super()._apply(fn, recurse)
        new = self._buffers.get("e_score_correction_bias")
        if old is not None and new is not None and new.dtype != torch.float32:
            self._buffers["e_score_correction_bias"] = old.to(device=new.device, dtype=torch.float32)
        return self

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C] -> [N, E] float32, with training-time jitter on the router input only (Switch;
        transformers' Mixtral also jitters the experts' input)."""
        eps = self.cfg.router_jitter
        if self.training and eps > 0:
            x = x * torch.empty_like(x).uniform_(1.0 - eps, 1.0 + eps)
        return F.linear(x.float(), self.weight.float())

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> Routing:
        """x: [N, C]; token_ids: [N] (hash routing only) -> Routing."""
        return self.route_fn(self, x, token_ids)


def _counts(expert_idx: torch.Tensor, num_experts: int) -> torch.Tensor:
    flat = expert_idx.reshape(-1)
    return torch.zeros(num_experts, dtype=torch.float32, device=flat.device).scatter_add_(
        0, flat, torch.ones(flat.shape, dtype=torch.float32, device=flat.device)
    )


def _limit_groups(choice: torch.Tensor, cfg: MoEConfig) -> torch.Tensor:
    """Group-limited routing (DeepSeek-V2 sec. 2.1.3, V3 sec. 2.1.2): keep the experts of each token's
    topk_group best groups, -inf elsewhere. A group scores by its best expert (V2) or best two (V3)."""
    N, E = choice.shape
    grouped = choice.view(N, cfg.n_group, E // cfg.n_group)  # [N, G, E/G]
    if cfg.group_score == "max":
        group_scores = grouped.max(dim=-1).values  # [N, G]
    else:
        group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)  # [N, G]
    best = group_scores.topk(cfg.topk_group, dim=-1).indices  # [N, topk_group]
    keep = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, best, True)  # [N, G]
    return grouped.masked_fill(~keep[..., None], float("-inf")).view(N, E)


def _per_token(cfg: MoEConfig, selected: torch.Tensor, weight: torch.Tensor, *, training: bool = True, **extra) -> Routing:
    """[N, K] picks and weights -> flat token-major assignments, dropping those over capacity.

    Tokens are dropped in training only: at inference a token's experts must not depend on
    which other tokens share its batch, or cached decoding would differ from the full forward."""
    N, K = selected.shape
    token_idx = None  # token-major: assignment s belongs to token s // K
    expert_idx, flat_weight = selected.reshape(-1), weight.reshape(-1)  # [N*K]
    dropped = torch.zeros((), device=selected.device)
    if cfg.capacity_factor is not None and training:
        cap = expert_capacity(cfg.capacity_factor, N, K, cfg.num_experts)
        keep = keep_within_capacity(selected, cap, cfg.num_experts).reshape(-1)  # [N*K]
        dropped = 1.0 - keep.float().mean()
        token_idx = torch.arange(N, device=selected.device).repeat_interleave(K)[keep]  # [S]
        expert_idx, flat_weight = expert_idx[keep], flat_weight[keep]
    return Routing(token_idx, expert_idx, flat_weight, _counts(selected, cfg.num_experts), dropped,
                   selected=selected, **extra)


def _token_choice(router: Router, x: torch.Tensor, token_ids: torch.Tensor | None) -> Routing:
    cfg = router.cfg
    logits = router.logits(x)  # [N, E]
    if cfg.router == "softmax_topk":
        scores = probs = logits.softmax(dim=-1)
    elif cfg.router == "sigmoid":
        scores = logits.sigmoid()
        probs = scores / scores.sum(dim=-1, keepdim=True)  # DeepSeek-V3's normalised s' for the balance loss
    else:  # topk_softmax
        scores, probs = logits, logits.softmax(dim=-1)
    choice = scores.detach()
    bias = getattr(router, "e_score_correction_bias", None)
    if bias is not None:
        choice = choice + bias
    if cfg.n_group > 1:
        choice = _limit_groups(choice, cfg)
    selected = choice.topk(cfg.top_k, dim=-1).indices  # [N, K]
    if cfg.router == "topk_softmax":
        weight = logits.gather(1, selected).softmax(dim=-1)  # [N, K]
    else:
        weight = scores.gather(1, selected)  # [N, K]
        if cfg.norm_topk_prob:
            weight = weight / (weight.sum(dim=-1, keepdim=True) + 1e-20)
    weight = weight * cfg.routed_scaling_factor
    return _per_token(cfg, selected, weight, training=router.training, probs=probs, logits=logits)


for _kind in ("softmax_topk", "topk_softmax", "sigmoid"):
    ROUTERS.register(_kind)(_token_choice)


@ROUTERS.register("expert_choice")
def _expert_choice(router: Router, x: torch.Tensor, token_ids: torch.Tensor | None) -> Routing:
    """Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing", eq. 1: S = softmax(X W_g)
    over experts; each expert takes the top-c tokens of its column of S, weighted by S. Here
    c = capacity_factor * top_k * N / E, so top_k * capacity_factor is the average experts per token."""
    cfg = router.cfg
    logits = router.logits(x)  # [N, E]
    probs = logits.softmax(dim=-1)
    N, E = probs.shape
    cap = expert_capacity(cfg.capacity_factor or 1.0, N, cfg.top_k, E)
    weight, token_idx = probs.t().topk(cap, dim=-1)  # [E, cap] each
    expert_idx = torch.arange(E, device=x.device).repeat_interleave(cap)  # [E*cap]
    token_idx = token_idx.reshape(-1)  # [E*cap]
    served = torch.zeros(N, dtype=torch.bool, device=x.device).index_fill_(0, token_idx, True)
    counts = torch.full((E,), float(cap), device=x.device)
    return Routing(token_idx, expert_idx, weight.reshape(-1), counts, 1.0 - served.float().mean(),
                   probs=probs, logits=logits)


def hash_experts(token_ids: torch.Tensor, layer_idx: int, num_experts: int, top_k: int) -> torch.Tensor:
    """[N] token ids -> [N, K] experts: a fixed integer hash of (token id, layer), then the next K-1
    experts. Stands in for the fixed random token->expert table of Roller et al. 2021 ("Hash Layers
    For Large Sparse Models") without needing the vocabulary size."""
    M = 0xFFFFFFFF  # stay in 32 bits so every product fits in int64
    h = (token_ids.long() ^ ((layer_idx + 1) * 0x9E3779B1)) & M
    h = (((h >> 16) ^ h) * 0x45D9F3B) & M
    h = (((h >> 16) ^ h) * 0x45D9F3B) & M
    h = (h >> 16) ^ h
    return (h[:, None] + torch.arange(top_k, device=h.device)) % num_experts  # [N, K] distinct experts


@ROUTERS.register("hash")
def _hash(router: Router, x: torch.Tensor, token_ids: torch.Tensor | None) -> Routing:
    cfg = router.cfg
    if token_ids is None:
        raise ValueError("token_ids: hash routing needs the token ids; call MoE.forward(x, token_ids=LongTensor[B, T])")
    selected = hash_experts(token_ids.reshape(-1), router.layer_idx, cfg.num_experts, cfg.top_k)  # [N, K]
    weight = torch.full(selected.shape, 1.0 / cfg.top_k, device=x.device)  # the k experts are averaged
    return _per_token(cfg, selected, weight)
