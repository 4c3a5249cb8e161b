"""What the installed transformers does, where its 5.x releases differ (tests run on 5.17 and 5.24)."""
from __future__ import annotations

import inspect


def grouped_gated_norm() -> bool:
    """transformers before 5.2x normalised Mamba-2's gated norm over all channels on its PyTorch path;
    mamba_ssm's kernels (and ours) normalise each group of channels on its own."""
    from transformers.models.mamba2 import modeling_mamba2

    return "group_size" in inspect.signature(modeling_mamba2.MambaRMSNormGated.__init__).parameters
