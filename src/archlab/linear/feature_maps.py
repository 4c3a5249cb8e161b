"""Feature maps phi for linear attention: sim(q, k) = phi(q) . phi(k).

Shapes: B batch, H heads, T time, D q/k width per head, Df feature width, m random features.
Each map takes x [B, H, T, D], positions [B, T] and role "q" or "k", returns [B, H, T, Df].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import FeatureMapConfig


class EluPlusOne(nn.Module):
    """elu(x) + 1 (Katharopoulos et al. 2020): positive, so the normaliser never vanishes."""

    def forward(self, x: Tensor, positions: Tensor, role: str) -> Tensor:
        return F.elu(x) + 1


class ReLUMap(nn.Module):
    """relu(x) (as in cosFormer without the re-weighting)."""

    def forward(self, x: Tensor, positions: Tensor, role: str) -> Tensor:
        return F.relu(x)


def orthogonal_gaussian(d: int, m: int, device=None, generator: torch.Generator | None = None) -> Tensor:
    """[d, m] projection of FAVOR+ (Choromanski et al. 2021, section 2.4): blocks of d
    orthonormal rows, each row rescaled to the length of a d-dim Gaussian vector (chi_d)."""
    blocks = []
    for _ in range(math.ceil(m / d)):
        g = torch.randn(d, d, device=device, generator=generator)
        q, _ = torch.linalg.qr(g)
        blocks.append(q.T)
    w = torch.cat(blocks)[:m]  # [m, d], orthonormal rows within each block
    lengths = torch.randn(m, d, device=device, generator=generator).norm(dim=1)
    return (w * lengths[:, None]).T.contiguous()


class Performer(nn.Module):
    """FAVOR+ positive random features (Choromanski et al. 2021, eq. 7 with h = exp(-|x|^2/2)):
        phi(x) = exp(w_i . x' - |x'|^2 / 2) / sqrt(m),   x' = x / D^(1/4),
    an unbiased estimate of exp(q . k / sqrt(D)). ``redraw="every_forward"`` draws a new
    projection on each training forward; "fixed" keeps the one drawn at init. With the
    normaliser on, each query's largest exponent is subtracted (it cancels in num/den)."""

    def __init__(self, d: int, m: int, redraw: str, normalize: bool):
        super().__init__()
        self.d, self.m, self.redraw, self.normalize = d, m, redraw, normalize
        self.register_buffer("projection", orthogonal_gaussian(d, m))  # [D, m]

    def forward(self, x: Tensor, positions: Tensor, role: str) -> Tensor:
        if self.training and self.redraw == "every_forward" and role == "q":
            with torch.no_grad():
                self.projection.copy_(orthogonal_gaussian(self.d, self.m, device=self.projection.device))
        x = x * self.d ** -0.25
        expo = x @ self.projection.to(x.dtype) - 0.5 * (x * x).sum(-1, keepdim=True)  # [B, H, T, m]
        if role == "q" and self.normalize:
            expo = expo - expo.amax(-1, keepdim=True).detach()
        return torch.exp(expo) * self.m ** -0.5


class Cosformer(nn.Module):
    """cosFormer (Qin et al. 2022, eq. 9-11): relu features re-weighted by cos(pi/2 (i-j)/M).
    cos(a - b) = cos a cos b + sin a sin b, so the re-weighted attention is the sum of two
    linear attentions, phi_cos = relu(x) cos(pi i / 2M) and phi_sin = relu(x) sin(pi i / 2M);
    concatenating both along the feature axis computes that sum in one linear attention."""

    def __init__(self, max_len: int):
        super().__init__()
        self.max_len = max_len

    def forward(self, x: Tensor, positions: Tensor, role: str) -> Tensor:
        if not torch.compiler.is_compiling() and positions.numel() and int(positions.max()) >= self.max_len:
            raise ValueError(
                f"positions: cosformer needs positions < linear.feature_map.cosformer_max_len={self.max_len}; "
                f"got {int(positions.max())}"
            )
        angle = (math.pi / (2 * self.max_len)) * positions.to(x.dtype)[:, None, :, None]  # [B, 1, T, 1]
        r = F.relu(x)
        return torch.cat([r * torch.cos(angle), r * torch.sin(angle)], dim=-1)


class Hedgehog(nn.Module):
    """Hedgehog (Zhang et al. 2024, eq. 5): a learned per-head linear map then
    phi(x) = [softmax(x W + b), softmax(-(x W + b))] over features; separate maps for q and k,
    initialised to the identity."""

    def __init__(self, heads: int, d: int):
        super().__init__()
        eye = torch.eye(d).expand(2, heads, d, d).clone()  # [role, H, D, D]
        self.weight = nn.Parameter(eye)
        self.bias = nn.Parameter(torch.zeros(2, heads, d))

    def forward(self, x: Tensor, positions: Tensor, role: str) -> Tensor:
        i = 0 if role == "q" else 1
        z = torch.einsum("bhtd,hde->bhte", x, self.weight[i].to(x.dtype)) + self.bias[i, :, None, :].to(x.dtype)
        return torch.cat([torch.softmax(z, dim=-1), torch.softmax(-z, dim=-1)], dim=-1)


class Taylor(nn.Module):
    """Second-order Taylor expansion of exp(q . k / sqrt(D)) (Based, Arora et al. 2024):
    phi(x) = [1, x / D^(1/4), vec(x x^T) / (sqrt(2) sqrt(D))], so
    phi(q) . phi(k) = 1 + q.k/sqrt(D) + (q.k)^2 / (2 D) > 0."""

    def __init__(self, d: int):
        super().__init__()
        self.d = d

    def forward(self, x: Tensor, positions: Tensor, role: str) -> Tensor:
        outer = (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)  # [B, H, T, D*D]
        return torch.cat([torch.ones_like(x[..., :1]), x * self.d ** -0.25, outer / math.sqrt(2 * self.d)], dim=-1)


def build_feature_map(cfg: FeatureMapConfig, heads: int, d: int, normalize: bool) -> nn.Module:
    kind = cfg.kind
    if kind == "elu+1":
        return EluPlusOne()
    if kind == "relu":
        return ReLUMap()
    if kind == "performer":
        return Performer(d, cfg.performer_features, cfg.performer_redraw, normalize)
    if kind == "cosformer":
        return Cosformer(cfg.cosformer_max_len)
    if kind == "hedgehog":
        return Hedgehog(heads, d)
    return Taylor(d)


def feature_map_params(kind: str, heads: int, d: int) -> int:
    return 2 * heads * (d * d + d) if kind == "hedgehog" else 0
