"""Routers: which experts each token goes to, and with what weight.

Shapes: N tokens (batch and time flattened), C model width, E experts, K experts per token,
G groups, S (token, expert) assignments.

Every router returns a :class:`Routing`: flat assignments (token, expert, weight) that the
dispatch op consumes, plus the router distribution and the loads that the balancing losses and
statistics need. ``valid`` [N] bool (False = a padding token of a left-padded batch) keeps pads
out of the loads, the capacity and expert choice; their outputs are never read. Router scores
are computed in float32 whatever the model dtype (the "selective precision" of ST-MoE, Zoph et
al. 2022: the softmax and top-k are sensitive to rounding).
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
    valid: torch.Tensor | None = None  # [N] bool, False = padding (absent: every token is real)


RouteFn = Callable[["Router", torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"], Routing]
ROUTERS: Registry[RouteFn] = Registry("moe.router")


class Router(nn.Module):
    """Holds the router weight ``weight`` [E, C] (none for hash routing) and, when
    ``correction_bias`` is set, the float32 buffer ``e_score_correction_bias`` [E] (DeepSeek-V3's
    name), which is added to the scores for choosing experts but never to the weights."""

    float32_buffers = ("e_score_correction_bias",)  # never cast with the model (loaders honour this too)

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
        old = {n: self._buffers.get(n) for n in self.float32_buffers}
        super()._apply(fn, recurse)
        for n, before in old.items():
            new = self._buffers.get(n)
            if before is not None and new is not None and new.dtype != torch.float32:
                self._buffers[n] = before.to(device=new.device, dtype=torch.float32)
        return self

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C] -> [N, E] float32, with training-time jitter on the router input only (Switch;
        transformers' Mixtral also jitters the experts' input)."""
        eps = self.cfg.router_jitter
        if self.training and eps > 0:
            x = x * torch.empty_like(x).uniform_(1.0 - eps, 1.0 + eps)
        return F.linear(x.float(), self.weight.float())

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None,
                valid: torch.Tensor | None = None) -> Routing:
        """x: [N, C]; token_ids: [N] (hash routing only); valid: [N] bool or None -> Routing."""
        return self.route_fn(self, x, token_ids, valid)


def _counts(selected: torch.Tensor, num_experts: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """[N, K] picks -> [E] float32 assignments per expert, pads not counted."""
    ones = torch.ones(selected.shape, dtype=torch.float32, device=selected.device)
    if valid is not None:
        ones = ones * valid[:, None]
    return torch.zeros(num_experts, dtype=torch.float32, device=selected.device).scatter_add_(
        0, selected.reshape(-1), ones.reshape(-1))


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


def _per_token(cfg: MoEConfig, selected: torch.Tensor, weight: torch.Tensor, *, training: bool = True,
               valid: torch.Tensor | None = None, **extra) -> Routing:
    """[N, K] picks and weights -> flat token-major assignments, dropping those over capacity.

    Tokens are dropped in training only: at inference a token's experts must not depend on
    which other tokens share its batch, or cached decoding would differ from the full forward.
    With pads (``valid``), the capacity is the share of the real tokens (a tensor: no host
    sync), pads take none of it, and the dropped fraction counts real assignments only; a
    padded batch then routes as its real tokens would without the pads."""
    N, K = selected.shape
    token_idx = None  # token-major: assignment s belongs to token s // K
    expert_idx, flat_weight = selected.reshape(-1), weight.reshape(-1)  # [N*K]
    dropped = torch.zeros((), device=selected.device)
    if cfg.capacity_factor is not None and training:
        if valid is None:
            cap = expert_capacity(cfg.capacity_factor, N, K, cfg.num_experts)
        else:  # expert_capacity's rule on the real-token count
            n = valid.sum().double()  # float64, the arithmetic of expert_capacity's Python floats
            cap = torch.minimum(torch.ceil(cfg.capacity_factor * n * K / cfg.num_experts), n)
        keep = keep_within_capacity(selected, cap, cfg.num_experts, valid).reshape(-1)  # [N*K]
        n_real = float(N * K) if valid is None else (valid.float().sum() * K).clamp_min(1.0)
        dropped = 1.0 - keep.float().sum() / n_real
        token_idx = torch.arange(N, device=selected.device).repeat_interleave(K)[keep]  # [S]
        expert_idx, flat_weight = expert_idx[keep], flat_weight[keep]
    return Routing(token_idx, expert_idx, flat_weight, _counts(selected, cfg.num_experts, valid), dropped,
                   selected=selected, valid=valid, **extra)


def _token_choice(router: Router, x: torch.Tensor, token_ids: torch.Tensor | None,
                  valid: torch.Tensor | None = None) -> Routing:
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
    return _per_token(cfg, selected, weight, training=router.training, valid=valid, probs=probs, logits=logits)


for _kind in ("softmax_topk", "topk_softmax", "sigmoid"):
    ROUTERS.register(_kind)(_token_choice)


@ROUTERS.register("expert_choice")
def _expert_choice(router: Router, x: torch.Tensor, token_ids: torch.Tensor | None,
                   valid: torch.Tensor | None = None) -> Routing:
    """Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing", eq. 1: S = softmax(X W_g)
    over experts; each expert takes the top-c tokens of its column of S, weighted by S. Here
    c = capacity_factor * top_k * N / E, so top_k * capacity_factor is the average experts per token.
    Pads rank below every real token; an expert left with slots only pads could fill gives them
    weight 0, and counts and the unserved share count real tokens only."""
    cfg = router.cfg
    logits = router.logits(x)  # [N, E]
    probs = logits.softmax(dim=-1)
    N, E = probs.shape
    cap = expert_capacity(cfg.capacity_factor or 1.0, N, cfg.top_k, E)
    rank = probs if valid is None else probs.masked_fill(~valid[:, None], -1.0)
    _, token_idx = rank.t().topk(cap, dim=-1)  # [E, cap]
    weight = probs.t().gather(1, token_idx)  # [E, cap]
    expert_idx = torch.arange(E, device=x.device).repeat_interleave(cap)  # [E*cap]
    token_idx = token_idx.reshape(-1)  # [E*cap]
    real = torch.ones(N, dtype=torch.bool, device=x.device) if valid is None else valid
    taken = real[token_idx]  # [E*cap] False where a slot went to a pad
    weight = weight.reshape(-1) * taken
    served = torch.zeros(N, dtype=torch.bool, device=x.device).index_fill_(0, token_idx, True) & real
    counts = taken.view(E, cap).float().sum(-1)
    unserved = 1.0 - served.float().sum() / real.float().sum().clamp_min(1.0)
    return Routing(token_idx, expert_idx, weight, counts, unserved, probs=probs, logits=logits, valid=valid)


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
def _hash(router: Router, x: torch.Tensor, token_ids: torch.Tensor | None,
          valid: torch.Tensor | None = None) -> Routing:
    cfg = router.cfg
    if token_ids is None:
        raise ValueError("token_ids: hash routing needs the token ids; call MoE.forward(x, token_ids=LongTensor[B, T])")
    selected = hash_experts(token_ids.reshape(-1), router.layer_idx, cfg.num_experts, cfg.top_k)  # [N, K]
    weight = torch.full(selected.shape, 1.0 / cfg.top_k, device=x.device)  # the k experts are averaged
    return _per_token(cfg, selected, weight, training=router.training, valid=valid)
