"""State-space token mixers: Mamba (selective scan) and Mamba-2 (SSD), their decode cache and accounting.

Build one with ``build_ssm_mixer(cfg, d_model, layer_idx)``; ``SSM`` maps ``SSMConfig.kind`` to the class.
"""
from archlab.registry import Registry
from archlab.ssm.accounting import cache_bytes, flops_per_token, params, state_elements
from archlab.ssm.cache import SSMCache
from archlab.ssm.config import SSMConfig, SSMDims
from archlab.ssm.mamba import MambaMixer
from archlab.ssm.mamba2 import Mamba2Mixer

SSM: Registry[type] = Registry("ssm.kind")
SSM.register("mamba")(MambaMixer)
SSM.register("mamba2")(Mamba2Mixer)


def build_ssm_mixer(cfg: SSMConfig, d_model: int, layer_idx: int):
    """The mixer class for ``cfg.kind``, built at this width."""
    return SSM.get(cfg.kind)(cfg, d_model, layer_idx)


__all__ = [
    "SSM", "SSMCache", "SSMConfig", "SSMDims", "MambaMixer", "Mamba2Mixer", "build_ssm_mixer",
    "params", "flops_per_token", "cache_bytes", "state_elements",
]
