"""Llama (1/2/3): pre-RMSNorm, SwiGLU, RoPE with every scaling kind transformers has
(linear, dynamic, yarn, llama3, longrope), optional attention/MLP biases."""
from archlab.interop.base import register
from archlab.interop.llama_like import LlamaLike


@register
class Llama(LlamaLike):
    model_type = "llama"
    architecture = "LlamaForCausalLM"
    priority = 0
    mlp_bias = True
