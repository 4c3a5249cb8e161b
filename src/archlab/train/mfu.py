"""Model FLOPs utilisation: achieved training FLOP/s over the device's peak dense bf16 FLOP/s.

Training FLOPs per token are taken as 3x the forward count (``archlab.flops_per_token``: the
backward pass costs about twice the forward, Kaplan et al. 2020), without recomputation from
activation checkpointing, as in the PaLM paper's definition of MFU.
"""
from __future__ import annotations

import os

import torch

# Dense (no 2:4 sparsity) bf16 tensor-core peaks from the vendors' datasheets, FLOP/s.
# Matched against the device name, most specific entry first; override with train.peak_flops
# or the ARCHLAB_PEAK_FLOPS environment variable.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989e12),
    ("H200", 989e12),  # SXM; the NVL card is rated lower (about 835e12): override there
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("H800", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("MI300X", 1307e12),
)
PEAK_ENV = "ARCHLAB_PEAK_FLOPS"


def peak_flops(device: torch.device | str, override: float | None = None) -> float | None:
    """Peak dense bf16 FLOP/s of ``device``: ``override``, else $ARCHLAB_PEAK_FLOPS, else the
    table by device name; None for the CPU or an unknown device (no MFU is reported then)."""
    if override is not None:
        return float(override)
    env = os.environ.get(PEAK_ENV)
    if env:
        try:
            return float(env)
        except ValueError:
            raise ValueError(f"{PEAK_ENV}: expected a number of FLOP/s such as 989e12, got {env!r}") from None
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return lookup_peak(torch.cuda.get_device_name(device))


def lookup_peak(device_name: str) -> float | None:
    name = device_name.lower()
    return next((v for k, v in PEAK_BF16_FLOPS if k.lower() in name), None)


def training_flops_per_token(model_cfg, seq_len: int) -> float:
    """Forward + backward FLOPs per trained token: 3x the forward count."""
    from archlab.analysis import flops_per_token

    return 3.0 * float(flops_per_token(model_cfg, seq_len))


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None, n_devices: int = 1) -> float | None:
    """Achieved / peak over all devices; None without a known peak."""
    if peak is None or peak <= 0:
        return None
    return tokens_per_s * flops_per_token / (peak * n_devices)
