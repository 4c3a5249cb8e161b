"""Mistral: Llama without biases, with one sliding window (``sliding_window`` -> ``attention.window``)."""
from archlab.interop.base import register
from archlab.interop.llama_like import LlamaLike


@register
class Mistral(LlamaLike):
    model_type = "mistral"
    architecture = "MistralForCausalLM"
    priority = 1
    bias = "none"
    window = "one"
