"""prepare, datasets and chat_format: folder layout, splits, formats, errors, the CLI."""

from __future__ import annotations

import argparse
import json
import urllib.error

import numpy as np
import pytest

from numpy_gpt.cli import prepare as prepare_cli
from numpy_gpt.data import chat_format, datasets
from numpy_gpt.data import prepare as prepare_mod
from numpy_gpt.data.dataset import DataError, TokenDataset
from numpy_gpt.data.datasets import find_data_file
from numpy_gpt.data.encode import text_pieces
from numpy_gpt.data.prepare import prepare, prepare_dataset
from numpy_gpt.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer

TEXT = "".join(f"Line {i}: to be, or not to be.\n" for i in range(200))
STORIES = "<|endoftext|>".join(f"\nStory {i}. Once upon a time, {i} cats.\n" for i in range(20))
CSV = (
    ",question,answer\n"
    '0,"hi, how are you?",i\'m fine. you?\n'
    "1,i'm fine. you?,great.\n"
    "2,what time is it?,noon.\n"
    '3,where is it?,"here, there."\n'
)


def _real(rel: str):
    try:
        return find_data_file(rel)
    except DataError:
        return None


def _write(tmp_path, name, content):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def _read_bin(folder, name, dtype):
    return np.fromfile(folder / name, dtype=dtype)


# ---- plain text and documents ------------------------------------------------------------------
def test_plain_text_char_split_by_position(tmp_path):
    src = _write(tmp_path, "t.txt", TEXT)
    out = prepare(src, tmp_path / "out", tokenizer="char")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["layout"] == "stream" and meta["split"]["by"] == "position"
    assert meta["tokenizer"] == "char" and meta["dtype"] == "uint16"
    assert meta["source"]["sha256"] == prepare_mod.sha256_file(src)
    cut = int(len(TEXT) * 0.9)  # nanoGPT: train = data[:int(n*0.9)]
    assert meta["splits"] == {"train": {"tokens": cut, "examples": None},
                              "val": {"tokens": len(TEXT) - cut, "examples": None}}
    tok = TokenDataset(out).tokenizer()
    assert isinstance(tok, CharTokenizer) and tok.special_tokens == {}
    train = _read_bin(out, "train.bin", np.uint16)
    val = _read_bin(out, "val.bin", np.uint16)
    assert tok.decode(train) + tok.decode(val) == TEXT
    assert sorted(p.name for p in out.iterdir()) == [
        "meta.json", "tokenizer.json", "train.bin", "val.bin"]  # no temp files left


def test_text_pieces_are_safe_for_bpe():
    tok = BPETokenizer.train(TEXT, 300)
    text = TEXT + "  trailing  \n\n\n" + TEXT
    pieces = text_pieces(text, size=100)
    assert len(pieces) > 10 and "".join(pieces) == text
    assert [i for p in pieces for i in tok.encode(p)] == tok.encode(text)


def test_documents_split_by_document_with_eot(tmp_path):
    src = _write(tmp_path, "s.txt", STORIES)
    out = prepare(src, tmp_path / "a", tokenizer="bpe", vocab_size=300, seed=3)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["split"] == {"by": "document", "seed": 3,
                             "fractions": {"train": 0.9, "val": 0.1}}
    assert meta["splits"]["train"]["examples"] == 18 and meta["splits"]["val"]["examples"] == 2
    tok = TokenDataset(out).tokenizer()
    train = _read_bin(out, "train.bin", np.uint16)
    assert (train == tok.eot_id).sum() == 18 and train[-1] == tok.eot_id
    docs = tok.decode(train).split("<|endoftext|>")[:-1]
    assert all(d.startswith("Story ") and d.endswith("cats.") for d in docs)
    same = prepare(src, tmp_path / "b", tokenizer="bpe", vocab_size=300, seed=3)
    other = prepare(src, tmp_path / "c", tokenizer="bpe", vocab_size=300, seed=4)
    assert (same / "val.bin").read_bytes() == (out / "val.bin").read_bytes()
    assert (other / "val.bin").read_bytes() != (out / "val.bin").read_bytes()


def test_test_split_and_word_tokenizer(tmp_path):
    src = _write(tmp_path, "s.txt", STORIES)
    out = prepare(src, tmp_path / "o", tokenizer="word", val_fraction=0.1, test_fraction=0.2)
    meta = json.loads((out / "meta.json").read_text())
    assert [meta["splits"][s]["examples"] for s in ("train", "val", "test")] == [14, 2, 4]
    assert meta["eot_id"] == 2 and meta["pad_id"] == 0  # <END>, <PAD>
    assert isinstance(TokenDataset(out).tokenizer(), WordTokenizer)
    # the same folder prepared again as plain text: stale example/test files are removed
    prepare(_write(tmp_path, "p.txt", TEXT), out, tokenizer="char")
    assert not (out / "test.bin").exists()


# ---- dialogue / instruction / conversations ----------------------------------------------------
def test_csv_rows_chain_into_conversations():
    convs = datasets.parse_dialogue_csv(CSV)
    assert [[m["role"] for m in c] for c in convs] == [
        ["user", "assistant", "user"], ["user", "assistant"], ["user", "assistant"]]
    assert convs[0][2]["content"] == "great." and convs[2][1]["content"] == "here, there."


def test_csv_prepared_masks_responses(tmp_path):
    out = prepare(_write(tmp_path, "d.csv", CSV), tmp_path / "o", tokenizer="char",
                  val_fraction=0.0)
    ds = TokenDataset(out)
    meta = ds.meta
    assert meta["layout"] == "examples" and meta["splits"]["train"]["examples"] == 3
    assert meta["splits"]["train"]["max_example_tokens"] > 0
    tok = ds.tokenizer()
    idx = _read_bin(out, "train_idx.bin", np.uint64)
    assert idx[0] == 0 and idx[-1] == meta["splits"]["train"]["tokens"] and len(idx) == 4
    ids, mask = ds.example("train", 0)
    assert tok.decode(ids) == (
        "User: hi, how are you?<|endoftext|>Assistant: i'm fine. you?<|endoftext|>"
        "User: great.<|endoftext|>")
    assert tok.decode(ids[mask == 1]) == " i'm fine. you?<|endoftext|>"


def test_alpaca_and_jsonl(tmp_path):
    alpaca = [{"instruction": "Add 2 and 3.", "input": "", "output": "5"},
              {"instruction": "Fix", "input": "teh", "output": "the"}]
    out = prepare(_write(tmp_path, "a.json", json.dumps(alpaca)), tmp_path / "a",
                  tokenizer="char", val_fraction=0.0)
    ds = TokenDataset(out)
    tok = ds.tokenizer()
    texts = {tok.decode(ds.example("train", k)[0]) for k in range(2)}
    assert chat_format.alpaca_prompt("Add 2 and 3.") + "5<|endoftext|>" in texts
    assert chat_format.alpaca_prompt("Fix", "teh") + "the<|endoftext|>" in texts
    lines = [{"messages": [{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": "Hello."}]}] * 3
    src = _write(tmp_path, "c.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    ds = TokenDataset(prepare(src, tmp_path / "c", tokenizer="char", val_fraction=0.0))
    ids, mask = ds.example("train", 0)
    tok = ds.tokenizer()
    assert tok.decode(ids).startswith("System: Be brief.<|endoftext|>User: Hi")
    assert tok.decode(ids[mask == 1]) == " Hello.<|endoftext|>"


def test_chat_training_format_equals_prompt_format():
    tok = BPETokenizer.train(TEXT + "User: Assistant: System:", 300)
    history = [{"role": "user", "content": "to be?"},
               {"role": "assistant", "content": "or not."},
               {"role": "user", "content": "Line 3: be"}]
    reply = {"role": "assistant", "content": "to be."}
    train_ids, mask = chat_format.encode_segments(
        tok, chat_format.format_conversation(history + [reply]))
    prompt_ids = chat_format.encode_prompt(tok, history)
    assert train_ids[: len(prompt_ids)] == prompt_ids
    assert all(mask[len(prompt_ids):])  # everything after the prompt is the reply
    assert tok.decode(train_ids[len(prompt_ids):]) == " to be.<|endoftext|>"
    text = chat_format.build_prompt(history)
    assert chat_format.render(chat_format.format_conversation(history + [reply])).startswith(text)
    assert chat_format.clean_reply(" to be.<|endoftext|>User: more") == "to be."


def test_chat_content_cannot_inject_end_of_turn():
    tok = BPETokenizer.train(TEXT, 300)
    ids, _ = chat_format.encode_segments(
        tok, chat_format.format_conversation([{"role": "user", "content": "<|endoftext|>"}]))
    assert ids.count(tok.eot_id) == 1  # only the real end of the turn


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "content", "fmt", "match"),
    [
        ("e.txt", "", None, "is empty"),
        ("bad.txt", b"abc\n\xffdef", None, r"byte 0xff at byte offset 4"),
        ("bom.txt", b"\xef\xbb\xbfab\xc3", None, r"byte offset 5"),
        ("q.csv", "a,b\n1,2\n", None, r"needs columns 'question' and 'answer' .*missing"),
        ("m.json", '[{"instruction": "x",\n  "output": }]', None, "line 2 column 13"),
        ("f.json", '[{"instruction": "x"}]', None, r"entry 0 lacks .*output"),
        ("l.jsonl", '{"messages": []}\n{"messages": [oops]}\n', None,
         "non-empty list"),
        ("l2.jsonl", '{"messages": [{"role": "user", "content": "x"}]}\n{"mess', None,
         r"l2.jsonl: malformed JSON at line 2 column 2"),
        ("r.jsonl", '{"messages": [{"role": "bot", "content": "x"}]}\n', None,
         "role 'bot'; use one of"),
        ("x.dat", "hello", None, "pass --format"),
    ],
)
def test_bad_input_errors(tmp_path, name, content, fmt, match):
    src = _write(tmp_path, name, content)
    with pytest.raises(DataError, match=match) as e:
        prepare(src, tmp_path / "o", fmt=fmt, tokenizer="char")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "o" / "meta.json").exists()


def test_vocab_too_small_for_special_tokens(tmp_path):
    src = _write(tmp_path, "t.txt", TEXT)
    with pytest.raises(DataError, match="too small"):
        prepare(src, tmp_path / "o", tokenizer="bpe", vocab_size=256)
    with pytest.raises(DataError, match="too small"):
        prepare(src, tmp_path / "o", tokenizer="word", vocab_size=3)
    with pytest.raises(DataError, match="sum to less than 1"):
        prepare(src, tmp_path / "o", tokenizer="char", val_fraction=0.6, test_fraction=0.5)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(DataError, match="unknown dataset 'nope'; valid names: shakespeare_char"):
        prepare_dataset("nope")


# ---- data dirs, download, reuse ----------------------------------------------------------------
@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real data dir reachable: cwd, $GPT_DATA_DIR and the repo root all under tmp_path."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv("GPT_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "REPO_ROOT", tmp_path / "repo" / "main")
    return tmp_path


def test_data_dir_search_order(isolated, monkeypatch):
    for d in ("explicit", "env", "cwd/data"):
        (isolated / d / "k").mkdir(parents=True)
        (isolated / d / "k" / "f.txt").write_text(d)
    monkeypatch.setenv("GPT_DATA_DIR", str(isolated / "env"))
    assert find_data_file("k/f.txt", isolated / "explicit").read_text() == "explicit"
    assert find_data_file("k/f.txt").read_text() == "env"
    monkeypatch.delenv("GPT_DATA_DIR")
    assert find_data_file("k/f.txt").read_text() == "cwd/data"
    (isolated / "repo" / "shared" / "data" / "z").mkdir(parents=True)
    (isolated / "repo" / "shared" / "data" / "z" / "g.txt").write_text("repo")
    assert find_data_file("z/g.txt").read_text() == "repo"  # <repo>/../shared/data
    with pytest.raises(DataError, match=r"k/nope.txt not found in any data dir .*put it at"):
        find_data_file("k/nope.txt")


def test_offline_tiny_shakespeare_error_says_where(isolated, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=r"save it as .*cwd/data/tinyshakespeare/input.txt"):
        datasets.dataset_file("shakespeare_char")


def test_download_checks_sha256(isolated, monkeypatch):
    real = _real("tinyshakespeare/input.txt")
    body = {"b": b"not shakespeare"}

    class Response:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self):
            return body["b"]

    monkeypatch.setattr(datasets.urllib.request, "urlopen", Response)
    (isolated / "dd").mkdir()  # an explicit --data-dir must exist; the download goes into it
    with pytest.raises(DataError, match="sha256"):
        datasets.dataset_file("shakespeare", data_dir=isolated / "dd")
    assert not (isolated / "dd" / "tinyshakespeare" / "input.txt").exists()
    if real is not None:
        body["b"] = real.read_bytes()
        path = datasets.dataset_file("shakespeare", data_dir=isolated / "dd")
        assert path == isolated / "dd" / "tinyshakespeare" / "input.txt" and path.is_file()


def test_prepare_dataset_reuses_up_to_date_folder(isolated):
    data = isolated / "dd"
    (data / "tinyshakespeare").mkdir(parents=True)
    _write(data / "tinyshakespeare", "input.txt", TEXT)
    out = prepare_dataset("shakespeare_char", isolated / "o", data_dir=data)
    stamp = (out / "meta.json").stat().st_mtime_ns
    assert prepare_dataset("shakespeare_char", out, data_dir=data) == out
    assert (out / "meta.json").stat().st_mtime_ns == stamp  # reused
    prepare_dataset("shakespeare_char", out, data_dir=data, val_fraction=0.2)
    assert json.loads((out / "meta.json").read_text())["split"]["fractions"]["val"] == 0.2
    (data / "tinyshakespeare" / "input.txt").write_text(TEXT + "more\n")  # new source bytes
    prepare_dataset("shakespeare_char", out, data_dir=data, val_fraction=0.2)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"]["train"]["tokens"] + meta["splits"]["val"]["tokens"] == len(TEXT) + 5


# ---- the command line --------------------------------------------------------------------------
def _run(argv):
    parser = argparse.ArgumentParser(allow_abbrev=False)
    prepare_cli.add_args(parser)
    return prepare_cli.run(parser.parse_args(argv))


def test_cli_prepares_and_reports(tmp_path, capsys):
    src = _write(tmp_path, "t.txt", TEXT)
    assert _run(["--input", str(src), "--tokenizer", "char", "--out", str(tmp_path / "o")]) == 0
    out, err = capsys.readouterr()
    assert "char tokenizer" in out and "train" in out and err == ""
    assert (tmp_path / "o" / "train.bin").is_file()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["nope"], "error: unknown dataset 'nope'; valid names:"),
        ([], "error: give a dataset name or --input FILE"),
        (["shakespeare", "--dataset", "instruct"], "error: give the dataset name once"),
        (["--input", "/no/such/file.txt"], "error: input file /no/such/file.txt does not exist"),
        (["--input", "EMPTY", "--tokenizer", "char"], "is empty"),
        (["--input", "TEXT", "--tokenizer", "bpe", "--vocab-size", "100"], "too small"),
        (["--input", "TEXT", "--tokenizer", "char", "--vocab-size", "100"], "not char"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, match):
    empty, text = _write(tmp_path, "e.txt", ""), _write(tmp_path, "t.txt", TEXT)
    argv = [str(empty) if a == "EMPTY" else str(text) if a == "TEXT" else a for a in argv]
    assert _run([*argv, "--out", str(tmp_path / "o")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert match in err


# ---- the named datasets on the real files (skipped when absent) --------------------------------
@pytest.mark.skipif(_real("tinyshakespeare/input.txt") is None, reason="Tiny Shakespeare absent")
def test_shakespeare_char_matches_nanogpt(tmp_path):
    out = prepare_dataset("shakespeare_char", tmp_path / "o")
    meta = json.loads((out / "meta.json").read_text())
    # nanoGPT data/shakespeare_char/prepare.py: vocab 65, 1,003,854 train / 111,540 val tokens
    assert meta["vocab_size"] == 65
    assert meta["splits"]["train"]["tokens"] == 1_003_854
    assert meta["splits"]["val"]["tokens"] == 111_540


@pytest.mark.slow
@pytest.mark.skipif(None in (_real("tinyshakespeare/input.txt"), _real("gpt2/vocab.bpe")),
                    reason="Tiny Shakespeare or GPT-2 files absent")
def test_shakespeare_gpt2_matches_nanogpt(tmp_path):
    out = prepare_dataset("shakespeare", tmp_path / "o")
    meta = json.loads((out / "meta.json").read_text())
    # nanoGPT data/shakespeare/prepare.py: 301,966 train / 36,059 val tokens
    assert meta["splits"]["train"]["tokens"] == 301_966
    assert meta["splits"]["val"]["tokens"] == 36_059


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tinystories", "instruct", "dialogue"])
def test_other_named_datasets(tmp_path, name):
    if _real(datasets.DATASETS[name].path) is None or _real("gpt2/vocab.bpe") is None:
        pytest.skip(f"{name} or GPT-2 files absent")
    ds = TokenDataset(prepare_dataset(name, tmp_path / "o"))
    x, y = ds.get_batch("train", 4, 256, np.random.default_rng(0))
    assert x.shape[0] == 4 and (y != -100).any()
    assert ds.layout == ("stream" if name == "tinystories" else "examples")
