"""Hugging Face transformers import/export, and archlab's own checkpoint format.

    from archlab.interop import from_hf, to_hf
    model = from_hf(hf_model_or_local_dir)     # an archlab Model; its config is model.cfg
    to_hf(model, "out/")                        # config.json + safetensors for AutoModelForCausalLM
    cfg_hf = to_hf_config(archlab.presets.get("llama-3-8b"))   # the transformers config of a preset

    save_archlab(model, "ckpt/")                # config.json (the ModelConfig) + model.safetensors
    model = load_archlab("ckpt/")

Families (keyed by transformers ``model_type``) live one per file in ``archlab.interop.families``.
Directories are read from safetensors only (never pickles), streamed into a model built on the
meta device, without the network. transformers is optional: ``pip install 'archlab[hf]'``.
"""
from archlab.interop._deps import MissingDependencyError
from archlab.interop.api import from_hf, from_hf_config, pick_family, to_hf, to_hf_config
from archlab.interop.base import FAMILIES, Family, Rule, Unsupported, supported_model_types
from archlab.interop.native import load_archlab, save_archlab

__all__ = [
    "FAMILIES", "Family", "MissingDependencyError", "Rule", "Unsupported", "from_hf", "from_hf_config",
    "load_archlab", "pick_family", "save_archlab", "supported_model_types", "to_hf", "to_hf_config",
]
