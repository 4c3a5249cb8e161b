"""generate(): repetition penalty and stop strings (the older signature keeps working)."""
from __future__ import annotations

import pytest
import torch

from archlab.data.tokenizer import ByteTokenizer
from archlab.generation import apply_repetition_penalty, generate, truncate_at_stop

TOK = ByteTokenizer()


def test_penalty_is_ctrls_rule():
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1, 1]]), 2.0)
    torch.testing.assert_close(out, torch.tensor([[1.0, -4.0, 1.0, 0.5]]))
    assert apply_repetition_penalty(logits, torch.tensor([[0]]), 1.0) is logits


class Fixed(torch.nn.Module):
    """The same logits at every position: 'a' 2.0, 'b' 1.5, everything else -5."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids, cache=None):
        out = torch.full((*ids.shape, 258), -5.0)
        out[..., 97], out[..., 98] = 2.0, 1.5
        return out


def test_penalty_breaks_a_greedy_loop():
    start = torch.tensor([[120]])
    assert TOK.decode(generate(Fixed(), start, 4, use_cache=False)[0, 1:].tolist()) == "aaaa"
    # once 'a' is seen its logit halves to 1.0 and 'b' (1.5) wins; then both are seen: 1.0 vs 0.75
    assert TOK.decode(generate(Fixed(), start, 4, use_cache=False, repetition_penalty=2.0)[0, 1:].tolist()) == "abaa"
    with pytest.raises(ValueError, match="repetition_penalty"):
        generate(Fixed(), start, 3, repetition_penalty=0.0)


def test_stop_strings_end_rows_and_pad(h):
    cycle = h.Lookup(258, lambda p: {97: 98, 98: 99, 99: 97}.get(p[-1], 97))  # a -> b -> c -> a
    ids = torch.tensor([[97], [99]])
    out = generate(cycle, ids, 8, use_cache=False, stop=["ca"], decode=TOK.decode, eos_id=TOK.eos_id)
    first = TOK.decode(out[0, 1:].tolist())
    assert first.startswith("bca") and truncate_at_stop(first, ["ca"]) == "b"
    second = out[1, 1:].tolist()  # from 'c': a b c a -> stops at "ca" after 4 tokens, then eos
    assert TOK.decode(second).startswith("abca") and second[4:] == [TOK.eos_id] * (len(second) - 4)
    assert out.shape[1] == 1 + 4  # both rows stopped: generation ended early
    with pytest.raises(ValueError, match="decode"):
        generate(cycle, ids, 2, use_cache=False, stop=["x"])


def test_truncate_at_stop():
    assert truncate_at_stop("hello\n\nworld", ["\n\n", "wor"]) == "hello"
    assert truncate_at_stop("abc", []) == "abc" and truncate_at_stop("abc", [""]) == "abc"
