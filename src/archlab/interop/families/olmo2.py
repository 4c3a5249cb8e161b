"""OLMo-2: RMSNorm on each sublayer's output inside the residual (``norm.placement = "output"``)
and RMSNorm over the whole q and k projections (``attention.qk_norm = "full"``)."""
from archlab.interop.base import register
from archlab.interop.llama_like import LlamaLike


@register
class Olmo2(LlamaLike):
    model_type = "olmo2"
    architecture = "Olmo2ForCausalLM"
    priority = 4
    qk_norm = "full"
    placement = "output"
    norm_names = ("post_attention_layernorm", "post_feedforward_layernorm")
    has_head_dim = False
