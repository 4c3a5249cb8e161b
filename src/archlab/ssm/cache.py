"""Decode state of one SSM layer: the convolution window and the SSM state, both of fixed size.

Shapes: B batch, K convolution width, Cc channels through the convolution, E channels, N state,
H heads, P head dim.
"""
from __future__ import annotations

import torch


class SSMCache:
    """Preallocated conv and SSM states, updated in place by the mixer's forward.

    conv_state: [B, K-1, Cc], the last K-1 inputs of the convolution (oldest first).
    ssm_state: [B, E, N] (mamba) or [B, H, P, N] (mamba2).
    The size does not grow with the sequence, so ``max_len`` only records what the cache was made
    for; ``length`` counts the tokens consumed.
    """

    def __init__(self, conv_state: torch.Tensor, ssm_state: torch.Tensor, max_len: int):
        self.conv_state = conv_state
        self.ssm_state = ssm_state
        self.max_len = max_len
        self.length = 0
        self.offsets: torch.Tensor | None = None  # [B] left-padding tokens per row (None: no padding)

    def set_padding(self, offsets: torch.Tensor) -> None:
        """Nothing to move: the mixer keeps pads out of both states (see its ``mask``)."""
        self.offsets = offsets

    @classmethod
    def zeros(cls, batch_size: int, conv_shape: tuple[int, ...], ssm_shape: tuple[int, ...], max_len: int,
              dtype: torch.dtype, device: torch.device | str | None = None) -> "SSMCache":
        return cls(
            torch.zeros(batch_size, *conv_shape, dtype=dtype, device=device),
            torch.zeros(batch_size, *ssm_shape, dtype=dtype, device=device),
            max_len,
        )

    @property
    def batch_size(self) -> int:
        return self.ssm_state.shape[0]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.conv_state, self.ssm_state))

    def reset(self) -> None:
        self.conv_state.zero_()
        self.ssm_state.zero_()
        self.length = 0
        self.offsets = None
