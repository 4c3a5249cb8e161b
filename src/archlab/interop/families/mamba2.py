"""Mamba-2 (Dao & Gu 2024) as transformers' ``mamba2``: the ``backbone`` layout of Mamba with the
SSD mixer (``dt_bias``, per-head ``A_log`` and ``D``, a gated RMSNorm per group of channels).

One ``layer_norm_epsilon`` serves the block norms and the gated norm, so ``ssm.norm_eps`` must
equal ``norm.eps``. ``time_step_limit`` (0, inf) means no clamp (``ssm.dt_limit = None``).
transformers' one-token decoding step does not clamp dt while its full forward does; ours clamps
in both, so a finite limit can make transformers' cached generation differ from its own forward.
transformers' ``chunk_size`` (like ours) changes speed only and is not carried over.
"""
from __future__ import annotations

import math
from typing import Any

from archlab.config import ModelConfig
from archlab.interop.base import register
from archlab.interop.common import ANY, Accept
from archlab.interop.families.mamba import MambaStack, require_section

NO_LIMIT = (0.0, math.inf)


@register
class Mamba2(MambaStack):
    model_type = "mamba2"
    architecture = "Mamba2ForCausalLM"
    kind = "mamba2"

    def ssm_from_hf(self, hf: Any) -> dict[str, Any]:
        limit = tuple(float(x) for x in getattr(hf, "time_step_limit", NO_LIMIT))
        return {"head_dim": hf.head_dim, "n_groups": hf.n_groups, "dt_limit": None if limit == NO_LIMIT else limit,
                "norm_eps": hf.layer_norm_epsilon}

    def ssm_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        eps = cfg.norm.eps
        require_section(cfg, "ssm", self.model_type, {
            "kind": "mamba2", "d_state": ANY, "d_conv": ANY, "expand": ANY, "head_dim": ANY, "n_groups": ANY,
            "dt_limit": ANY, "conv_bias": ANY, "proj_bias": ANY, "dt_min": ANY, "dt_max": ANY, "dt_init_floor": ANY,
            "norm_eps": Accept(lambda v: v == eps, f"only norm.eps ({eps}): one layer_norm_epsilon for every norm"),
        })
        d = cfg.ssm.dims(cfg.d_model)
        return {"num_heads": d.heads, "head_dim": d.head_dim, "n_groups": d.groups,
                "time_step_limit": tuple(cfg.ssm.dt_limit or NO_LIMIT)}  # a tuple, as the default: not rewritten
