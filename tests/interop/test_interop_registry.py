"""Interop uses transformers' own config classes even after another package re-registers a model
type in AutoConfig (flash-linear-attention registers its own "mamba2" config when imported)."""
from __future__ import annotations

import pytest
import torch

import archlab
from archlab.interop import from_hf, to_hf, to_hf_config

transformers = pytest.importorskip("transformers")
from transformers.models.auto.configuration_auto import CONFIG_MAPPING  # noqa: E402


def _impostor(model_type: str) -> type:
    class Impostor(transformers.PretrainedConfig):  # keeps whatever keywords it is given, knows no fields
        pass

    Impostor.model_type = model_type
    return Impostor


@pytest.fixture(params=[("llama-3-debug", "LlamaConfig"), ("mamba2-130m", "Mamba2Config")], ids=lambda p: p[0])
def reregistered(request):
    """A preset's config and transformers' own config class for it, with AutoConfig's entry for its
    model type replaced."""
    name, class_name = request.param
    cfg = archlab.presets.get(name)
    if name.startswith("mamba2"):  # a small Mamba-2 of the published layout
        cfg = cfg.replace(d_model=64, n_layers=2, vocab_size=97, **{"ssm.d_state": 16, "ssm.head_dim": 16})
    model_type = to_hf_config(cfg).model_type
    own = getattr(transformers, class_name)
    saved = CONFIG_MAPPING._extra_content.get(model_type)
    transformers.AutoConfig.register(model_type, _impostor(model_type), exist_ok=True)
    assert transformers.AutoConfig.for_model(model_type).__class__ is not own  # the registry really is replaced
    yield cfg, own
    if saved is None:
        CONFIG_MAPPING._extra_content.pop(model_type, None)
    else:
        CONFIG_MAPPING._extra_content[model_type] = saved


def test_to_hf_config_and_read_back_use_transformers_own_class(reregistered, tmp_path):
    cfg, own = reregistered
    hf = to_hf_config(cfg)
    assert type(hf) is own
    assert hf.vocab_size == cfg.vocab_size and hf.num_hidden_layers == cfg.n_layers
    model = archlab.build(cfg).eval()
    to_hf(model, tmp_path)  # config.json read back through transformers' class, not the impostor
    back = from_hf(tmp_path).eval()
    assert to_hf_config(back.cfg).to_dict() == hf.to_dict()
    ids = torch.randint(0, cfg.vocab_size, (1, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(back(ids), model(ids))
