"""What every row is given: the device, the model dtype, the sizes and the measured ceilings."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from archlab.bench.sizes import Sizes
from archlab.bench.timing import Ceilings, median_ms


@dataclass(frozen=True)
class Context:
    device: torch.device
    dtype: torch.dtype  # bf16 on CUDA, float32 on the CPU
    sizes: Sizes
    ceilings: Ceilings
    compile: bool  # torch.compile where it is the fast path on CUDA; never on the CPU

    def time_ms(self, fn) -> float:
        return median_ms(fn, self.device, warmup=self.sizes.warmup, rep=self.sizes.rep)

    def free(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def randn(self, *shape: int, grad: bool = False) -> torch.Tensor:
        return torch.randn(shape, device=self.device, dtype=self.dtype).requires_grad_(grad)
