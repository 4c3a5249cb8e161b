"""Expert weights: the routed experts stored fused as 3D tensors, and the always-on shared experts.

Shapes: E experts, C model width, I expert hidden width, H total shared hidden width.

The layouts follow transformers 5.x so that conversion is a renaming: routed experts as
``gate_up_proj`` [E, 2I, C] (gate rows first) and ``down_proj`` [E, C, I] (Mixtral, OLMoE,
Qwen2-MoE, DeepSeek-V3 ``*Experts``); shared experts as one MLP with ``gate_proj``/``up_proj``/
``down_proj`` Linears of width H = shared_experts * shared_expert_hidden (N shared experts whose
outputs add are one MLP of N times the width, which is how DeepSeek stores them).
"""
from __future__ import annotations

import torch
from torch import nn

from archlab.moe.config import MoEConfig
from archlab.ops.moe_dispatch.common import ACTIVATIONS


class RoutedExperts(nn.Module):
    def __init__(self, cfg: MoEConfig, d_model: int):
        super().__init__()
        E, I = cfg.num_experts, cfg.expert_hidden
        if cfg.gated:
            self.gate_up_proj = nn.Parameter(torch.empty(E, 2 * I, d_model))
        else:
            self.up_proj = nn.Parameter(torch.empty(E, I, d_model))
        self.down_proj = nn.Parameter(torch.empty(E, d_model, I))

    @property
    def w_in(self) -> torch.Tensor:
        """[E, G*I, C]: the input projection, whatever its name."""
        return self.gate_up_proj if hasattr(self, "gate_up_proj") else self.up_proj


class SharedExperts(nn.Module):
    def __init__(self, cfg: MoEConfig, d_model: int):
        super().__init__()
        H = cfg.shared_hidden_total()
        self.gated = cfg.gated
        if cfg.gated:
            self.gate_proj = nn.Linear(d_model, H, bias=False)
        self.up_proj = nn.Linear(d_model, H, bias=False)
        self.down_proj = nn.Linear(H, d_model, bias=False)
        self.act = ACTIVATIONS[cfg.act()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.gate_proj(x)) * self.up_proj(x) if self.gated else self.act(self.up_proj(x))
        return self.down_proj(h)
