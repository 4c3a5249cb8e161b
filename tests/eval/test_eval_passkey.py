"""Passkey prompts (length, needle depth, the key twice) and the accuracy grid."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import archlab
from archlab.data.tokenizer import ByteTokenizer
from archlab.errors import ConfigError
from archlab.eval.passkey import QUESTION, make_prompt, passkey_grid, read_key

TOK = ByteTokenizer()


class Oracle(nn.Module):
    """Reads the key from the byte prompt and spells ' KEY.' after the question (last position only)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, ids, cache=None):
        out = torch.zeros(*ids.shape, 258)
        for b, row in enumerate(ids.tolist()):
            text = TOK.decode(row)
            key = re.search(r"The pass key is (\d+)\. Remember", text).group(1)
            said = text.rsplit(QUESTION, 1)[1]
            answer = f" {key}."
            out[b, -1, ord(answer[len(said)] if len(said) < len(answer) else ".")] = 10.0
        return out


@pytest.mark.parametrize("depth", [0.0, 0.3, 1.0])
def test_prompt_length_depth_and_key(depth):
    p = make_prompt(TOK, 600, depth, "48151", prefix=[257])
    text = TOK.decode(p.ids)
    assert 600 - 25 < len(p.ids) <= 600 and p.ids[0] == 257  # whole filler sentences, under the budget
    assert text.count("48151") == 2 and text.endswith(QUESTION)
    needle = text.index("The pass key is 48151")
    assert p.needle_at == needle  # the needle starts with a space; + 1 for the prefix token
    filler_share = (needle - text.index("there.") - 6) / (len(text) - len(QUESTION) - 60 - text.index("there."))
    assert abs(filler_share - depth) < 0.1


def test_prompts_of_one_length_are_equal_length():
    lens = {len(make_prompt(TOK, 400, d, str(k)).ids) for d in (0, 0.5, 1) for k in (10000, 99999, 31415)}
    assert len(lens) == 1


def test_too_short_length_is_named():
    with pytest.raises(ConfigError, match="lengths"):
        make_prompt(TOK, 50, 0.5, "12345")
    with pytest.raises(ConfigError, match="depths"):
        make_prompt(TOK, 500, 1.5, "12345")


def test_read_key():
    assert read_key(" 12345. Remember") == "12345" and read_key("no digits") == "" and read_key("\n 7x") == "7"


def test_oracle_scores_one_and_random_model_runs():
    r = passkey_grid(Oracle(), TOK, lengths=(300, 400), depths=(0.0, 1.0), n_trials=2, use_cache=False,
                     progress=False)
    assert r.accuracy == ((1.0, 1.0), (1.0, 1.0)) and r.prompt_tokens[0] <= 300
    torch.manual_seed(0)
    model = archlab.build(archlab.ModelConfig(vocab_size=258, d_model=32, n_layers=1))
    r = passkey_grid(model, TOK, lengths=(260,), depths=(0.5,), n_trials=2, progress=False)
    assert r.accuracy[0][0] in (0.0, 0.5, 1.0) and "depth 0.5" in r.table()


def test_learned_table_marks_long_prompts_undefined():
    cfg = archlab.ModelConfig(vocab_size=258, d_model=32, n_layers=1).replace(
        **{"position.kind": "learned", "position.max_positions": 300})
    r = passkey_grid(archlab.build(cfg), TOK, lengths=(260, 600), depths=(0.5,), n_trials=1, progress=False)
    assert r.accuracy[1] == (None,) and r.accuracy[0][0] is not None and "max_positions" in r.note
