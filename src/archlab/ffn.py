"""Position-wise MLPs: a GELU MLP (GPT-2), gated SwiGLU (Llama) and GeGLU (Gemma).

Shapes: B batch, T time, C model width, I hidden width.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from archlab.configbase import Config
from archlab.errors import check
from archlab.packing import PackedMixin
from archlab.registry import Registry

FFN: Registry[type[nn.Module]] = Registry("ffn.kind")

Activation = Literal["gelu", "gelu_tanh", "silu", "relu"]


@dataclass(frozen=True)
class FFNConfig(Config):
    _section = "ffn"
    kind: Literal["mlp", "swiglu", "geglu"] = "swiglu"  # plain two-matrix MLP or a gated three-matrix one
    hidden: int | None = None  # hidden width; None = 4*d_model (mlp) or 8/3*d_model rounded to 256 (gated)
    bias: bool = False  # biases on every projection (GPT-2, BLOOM)
    activation: Activation | None = None  # override; default gelu (mlp), silu (swiglu), gelu_tanh (geglu)

    def __post_init__(self) -> None:
        check(self.hidden is None or self.hidden > 0, "ffn.hidden", f"must be a positive integer or null, got {self.hidden}")
        if self.kind == "swiglu":
            check(self.activation in (None, "silu"), "ffn.activation", "swiglu uses silu; use kind=geglu or mlp for others")

    def hidden_size(self, d_model: int) -> int:
        if self.hidden is not None:
            return self.hidden
        if self.kind == "mlp":
            return 4 * d_model
        return max(256, 256 * round(8 * d_model / 3 / 256))

    def act(self) -> Activation:
        return self.activation or {"mlp": "gelu", "swiglu": "silu", "geglu": "gelu_tanh"}[self.kind]


def activation_fn(name: Activation):
    return {
        "gelu": nn.functional.gelu,
        "gelu_tanh": lambda x: nn.functional.gelu(x, approximate="tanh"),
        "silu": nn.functional.silu,
        "relu": nn.functional.relu,
    }[name]


@FFN.register("mlp")
class MLP(nn.Module):
    """y = W2 act(W1 x + b1) + b2."""

    def __init__(self, cfg: FFNConfig, d_model: int, layer_idx: int = 0):
        super().__init__()
        hidden = cfg.hidden_size(d_model)
        self.up = nn.Linear(d_model, hidden, bias=cfg.bias)
        self.down = nn.Linear(hidden, d_model, bias=cfg.bias)
        self.act = activation_fn(cfg.act())

    def forward(self, x: torch.Tensor, **_: object) -> torch.Tensor:
        return self.down(self.act(self.up(x)))

    @staticmethod
    def params(cfg: FFNConfig, d_model: int) -> int:
        h = cfg.hidden_size(d_model)
        return 2 * d_model * h + ((h + d_model) if cfg.bias else 0)

    @staticmethod
    def flops_per_token(cfg: FFNConfig, d_model: int) -> float:
        return 2.0 * 2 * d_model * cfg.hidden_size(d_model)


@FFN.register("swiglu")
@FFN.register("geglu")
class GatedMLP(PackedMixin, nn.Module):
    """y = W_down (act(W_gate x) * W_up x)  (Shazeer 2020, "GLU Variants Improve Transformer")."""

    def __init__(self, cfg: FFNConfig, d_model: int, layer_idx: int = 0):
        super().__init__()
        hidden = cfg.hidden_size(d_model)
        self.gate = nn.Linear(d_model, hidden, bias=cfg.bias)
        self.up = nn.Linear(d_model, hidden, bias=cfg.bias)
        self.down = nn.Linear(hidden, d_model, bias=cfg.bias)
        self.act_name = cfg.act()
        self.act = activation_fn(self.act_name)

    def forward(self, x: torch.Tensor, **_: object) -> torch.Tensor:
        g, u = self._project(x)  # one matmul once packed (decoding), else two
        return self.down(self.act(g) * u)

    def _packed_layers(self) -> list[nn.Linear]:
        return [self.gate, self.up]

    @staticmethod
    def params(cfg: FFNConfig, d_model: int) -> int:
        h = cfg.hidden_size(d_model)
        return 3 * d_model * h + ((2 * h + d_model) if cfg.bias else 0)

    @staticmethod
    def flops_per_token(cfg: FFNConfig, d_model: int) -> float:
        return 2.0 * 3 * d_model * cfg.hidden_size(d_model)
