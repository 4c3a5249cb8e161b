"""DeepSeek-V3: DeepSeek-V2's latent attention and layer plan with a sigmoid router. Experts are
chosen by sigmoid score plus the per-expert ``e_score_correction_bias`` (a buffer, used for the
choice only), within the best ``topk_group`` of ``n_group`` groups (a group scored by the sum of
its best two experts); the chosen sigmoid scores are renormalised when ``norm_topk_prob`` and
scaled by ``routed_scaling_factor``. ``rope_interleave`` picks RoPE on interleaved pairs (the
published weights) or on halves. Checkpoints' multi-token-prediction layer (``model.layers.61``
of the 61-layer model), which transformers does not build, is skipped on load."""
import re
from typing import Any

from archlab.config import ModelConfig
from archlab.interop.base import register
from archlab.interop.common import ANY
from archlab.interop.families.deepseek_v2 import DeepseekV2
from archlab.moe.config import MoEConfig

_LAYER = re.compile(r"^model\.layers\.(\d+)\.")


@register
class DeepseekV3(DeepseekV2):
    model_type = "deepseek_v3"
    architecture = "DeepseekV3ForCausalLM"
    priority = 25

    def ignored(self, key: str, cfg: ModelConfig) -> bool:
        m = _LAYER.match(key)
        return (m is not None and int(m.group(1)) >= cfg.n_layers) or super().ignored(key, cfg)

    def interleaved_from_hf(self, hf: Any) -> bool:
        return bool(getattr(hf, "rope_interleave", True))

    def moe_from_hf(self, hf: Any, common: dict[str, Any]) -> MoEConfig:
        groups = {}
        if (hf.n_group or 1) > 1:
            groups = dict(n_group=hf.n_group, topk_group=hf.topk_group, group_score="top2_sum")
        return MoEConfig(**common, router="sigmoid", correction_bias=True, norm_topk_prob=bool(hf.norm_topk_prob), **groups)

    def moe_fields(self, cfg: ModelConfig) -> dict[str, Any]:
        return {"router": "sigmoid", "correction_bias": True, "norm_topk_prob": ANY, "n_group": ANY, "topk_group": ANY,
                "group_score": "top2_sum" if cfg.moe.n_group > 1 else ANY}

    def moe_to_hf(self, moe: MoEConfig) -> dict[str, Any]:
        return {"n_group": moe.n_group, "topk_group": moe.topk_group, "norm_topk_prob": moe.norm_topk_prob}

    def position_fields(self) -> dict[str, Any]:
        return {"position.interleaved": ANY}

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        return {**super().config_to_hf(cfg), "rope_interleave": cfg.position.interleaved}
