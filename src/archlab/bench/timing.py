"""Timing on the device present, and the two ceilings every figure is compared with.

On CUDA a run is bracketed by CUDA events (kernel time, not launch time); on the CPU by
``time.perf_counter``. Both report the median of ``rep`` runs after ``warmup`` runs.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from archlab.bench.result import num


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, *, warmup: int = 2, rep: int = 5) -> float:
    """Median milliseconds of ``fn()`` over ``rep`` runs after ``warmup`` runs."""
    if rep < 1:
        raise ValueError(f"rep: must be >= 1, got {rep}")
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(rep):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def wall_s(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call of ``fn()``, device work included (for loops that sync on their own)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


@dataclass(frozen=True)
class Ceilings:
    """Measured on random data: square matmul rate in ``dtype`` and device copy bandwidth
    (bytes read + written)."""

    tflops: float
    copy_gbs: float
    dtype: torch.dtype
    matmul_n: int

    def of_matmul(self, flops_per_s: float) -> float:
        return flops_per_s / (self.tflops * 1e12)

    def of_copy(self, bytes_per_s: float) -> float:
        return bytes_per_s / (self.copy_gbs * 1e9)

    def describe(self) -> str:
        name = str(self.dtype).removeprefix("torch.")
        return f"{name} matmul {self.matmul_n}^3 {num(self.tflops)} TFLOP/s, copy {num(self.copy_gbs)} GB/s"



def _matmul_tflops(device, dtype, n: int, warmup: int, rep: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ms = median_ms(lambda: a @ b, device, warmup=warmup, rep=rep)
    return 2 * n**3 / (ms * 1e-3) / 1e12


def _copy_gbs(device, nbytes: int, warmup: int, rep: int) -> float:
    x = torch.randn(nbytes // 4, device=device, dtype=torch.float32)
    y = torch.empty_like(x)
    ms = median_ms(lambda: y.copy_(x), device, warmup=warmup, rep=rep)
    return 2 * x.numel() * 4 / (ms * 1e-3) / 1e9


def measure_ceilings(device: torch.device, dtype: torch.dtype, *, matmul_n: int, copy_bytes: int,
                     warmup: int = 2, rep: int = 5) -> Ceilings:
    tflops = _matmul_tflops(device, dtype, matmul_n, warmup, rep)
    gbs = _copy_gbs(device, copy_bytes, warmup, rep)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Ceilings(tflops=tflops, copy_gbs=gbs, dtype=dtype, matmul_n=matmul_n)
