"""The mixture-of-experts FFN: router -> routed experts (+ shared experts) -> weighted sum.

Shapes: B batch, T time, C model width, N = B*T tokens, E experts, K experts per token.

Contract with the model (an FFN like any other)::

    moe = MoE(cfg, d_model, layer_idx)
    y = moe(x)                      # [B, T, C] -> [B, T, C]; hash routing: moe(x, token_ids=ids)
    loss = lm_loss + sum(m.aux_loss for m in model.modules() if isinstance(m, MoE))
    stats = moe.stats               # detached: load_fraction [E], dropped_fraction, router_entropy,
                                    # max_over_mean_load
    optimizer.step(); moe.update_bias()   # aux-loss-free balancing; a no-op when it is off

``aux_loss`` is a float32 scalar: the sum of the enabled balancing losses, each times its
coefficient (zero when none is enabled); it is recomputed by every forward.
"""
from __future__ import annotations

import torch
from torch import nn

from archlab.moe import accounting
from archlab.moe.balancing import balance_loss, sign_bias_update, z_loss
from archlab.moe.config import MoEConfig
from archlab.moe.experts import RoutedExperts, SharedExperts
from archlab.moe.routers import Router, Routing
from archlab.moe.stats import routing_stats
from archlab.ops.moe_dispatch import expert_ffn_grouped, expert_ffn_reference


class MoE(nn.Module):
    params = staticmethod(accounting.params)
    active_params = staticmethod(accounting.active_params)
    flops_per_token = staticmethod(accounting.flops_per_token)

    def __init__(self, cfg: MoEConfig, d_model: int, layer_idx: int = 0):
        super().__init__()
        self.cfg, self.d_model, self.layer_idx = cfg, d_model, layer_idx
        self.router = Router(cfg, d_model, layer_idx)
        self.experts = RoutedExperts(cfg, d_model)
        if cfg.shared_experts:
            self.shared_experts = SharedExperts(cfg, d_model)
        if cfg.shared_gate:
            self.shared_expert_gate = nn.Linear(d_model, 1, bias=False)
        if cfg.bias_update_rate > 0:
            # assignments per expert since the last update_bias(); not saved with the weights
            self.register_buffer("load_since_update", torch.zeros(cfg.num_experts), persistent=False)
        self.aux_loss: torch.Tensor = torch.zeros(())
        self.stats: dict[str, torch.Tensor] = {}
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, std: float = 0.02) -> None:
        for p in self.parameters():
            nn.init.normal_(p, std=std)

    def _apply(self, fn, recurse=True):
        # keep the load counter float32 through model.to(bfloat16): counts above 256 would round
        old = self._buffers.get("load_since_update")
        super()._apply(fn, recurse)
        new = self._buffers.get("load_since_update")
        if old is not None and new is not None and new.dtype != torch.float32:
            self._buffers["load_since_update"] = old.to(device=new.device, dtype=torch.float32)
        return self

    def _experts(self, x: torch.Tensor, r: Routing) -> torch.Tensor:
        args = (x, self.experts.w_in, self.experts.down_proj, r.token_idx, r.expert_idx, r.weight)
        if self.cfg.dispatch == "reference":
            return expert_ffn_reference(*args, activation=self.cfg.act())
        return expert_ffn_grouped(*args, activation=self.cfg.act(), backend=self.cfg.dispatch)

    def _aux_loss(self, r: Routing, B: int, T: int, device: torch.device) -> torch.Tensor:
        cfg = self.cfg
        total = torch.zeros((), dtype=torch.float32, device=device)
        v = r.valid  # [N] or None
        if cfg.load_balance_coef > 0:
            total = total + cfg.load_balance_coef * balance_loss(r.probs[None], r.selected[None],
                                                                 None if v is None else v[None])
        if cfg.seq_balance_coef > 0:
            E, K = cfg.num_experts, cfg.top_k
            total = total + cfg.seq_balance_coef * balance_loss(r.probs.view(B, T, E), r.selected.view(B, T, K),
                                                                None if v is None else v.view(B, T))
        if cfg.z_loss_coef > 0:
            total = total + cfg.z_loss_coef * z_loss(r.logits, v)
        return total

    def forward(self, x: torch.Tensor, *, token_ids: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                **_: object) -> torch.Tensor:
        """x: [B, T, C]; token_ids: [B, T] integers, needed by hash routing only; mask: [B, T] bool,
        False on the pads of a left-padded batch (they take no capacity and count in no loss or
        statistic; their outputs are not meaningful). Other keywords that a block passes to every
        FFN are ignored."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x: expected [batch, time, {self.d_model}], got shape {tuple(x.shape)}")
        B, T, C = x.shape
        if token_ids is not None and (tuple(token_ids.shape) != (B, T) or token_ids.is_floating_point()):
            raise ValueError(f"token_ids: expected integers of shape [{B}, {T}], got {token_ids.dtype} {tuple(token_ids.shape)}")
        if self.cfg.router == "hash" and token_ids is None:
            raise ValueError(
                f"token_ids: MoE layer {self.layer_idx} uses hash routing, which needs the token ids: "
                "call forward(x, token_ids=LongTensor[B, T])"
            )
        if mask is not None and (tuple(mask.shape) != (B, T) or mask.dtype != torch.bool):
            raise ValueError(f"mask: expected bool of shape [{B}, {T}], got {mask.dtype} {tuple(mask.shape)}")
        xf = x.reshape(B * T, C)  # [N, C]
        r = self.router(xf, None if token_ids is None else token_ids.reshape(B * T),
                        None if mask is None else mask.reshape(B * T))
        y = self._experts(xf, r)  # [N, C]
        if self.cfg.shared_experts:
            shared = self.shared_experts(xf)  # [N, C]
            if self.cfg.shared_gate:
                shared = torch.sigmoid(self.shared_expert_gate(xf)) * shared
            y = y + shared
        self.aux_loss = self._aux_loss(r, B, T, x.device)
        self.stats = routing_stats(r)
        if self.training and self.cfg.bias_update_rate > 0:
            self.load_since_update += r.counts
        return y.view(B, T, C)

    @torch.no_grad()
    def update_bias(self) -> None:
        """Aux-loss-free balancing step, from the loads accumulated since the last call. The trainer
        calls it after each optimizer step; a no-op when ``bias_update_rate`` is 0."""
        if self.cfg.bias_update_rate == 0:
            return
        sign_bias_update(self.router.e_score_correction_bias, self.load_since_update, self.cfg.bias_update_rate)
        self.load_since_update.zero_()

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"experts={c.num_experts}, top_k={c.top_k}, hidden={c.expert_hidden}, router={c.router}, "
                f"shared={c.shared_experts}, dispatch={c.dispatch}")
