"""Batches: shift by one, determinism for a seed, padding/masking, resume state, bad folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from numpy_gpt.data.dataset import (
    IGNORE_INDEX,
    DataError,
    ExampleLoader,
    TokenDataset,
    collate_examples,
    get_batch,
    rng_from_state,
    rng_state,
    token_dtype,
)
from numpy_gpt.data.prepare import prepare


@pytest.fixture
def memmap(tmp_path):
    data = (np.arange(1000) % 251).astype(np.uint16)
    data.tofile(tmp_path / "train.bin")
    return np.memmap(tmp_path / "train.bin", dtype=np.uint16, mode="r")


def test_get_batch_targets_are_inputs_shifted_by_one(memmap):
    x, y = get_batch(memmap, 8, 16, np.random.default_rng(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == np.int64
    assert x.flags.c_contiguous and y.flags.c_contiguous
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    # every row is a window of the data: row = data[s : s + T], s = the row's first token
    data = np.asarray(memmap, dtype=np.int64)
    for row_x, row_y in zip(x, y):
        s = int(np.flatnonzero(data == row_x[0])[0])  # values repeat every 251: first hit
        assert s + 16 < len(data)
        np.testing.assert_array_equal(row_y, data[s + 1 : s + 17])


def test_get_batch_window_starts_cover_the_range():
    data = np.arange(20, dtype=np.uint16)
    x, _ = get_batch(data, 2000, 4, np.random.default_rng(1))
    assert x[:, 0].min() == 0 and x[:, 0].max() == 20 - 4 - 1  # last start: y ends at data[-1]


def test_get_batch_determinism(memmap):
    a = get_batch(memmap, 4, 8, np.random.default_rng(123))
    b = get_batch(memmap, 4, 8, np.random.default_rng(123))
    c = get_batch(memmap, 4, 8, np.random.default_rng(124))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_rng_state_json_roundtrip_resumes_exactly(memmap):
    rng = np.random.default_rng(7)
    get_batch(memmap, 4, 8, rng)
    saved = json.loads(json.dumps(rng_state(rng)))
    expected = get_batch(memmap, 4, 8, rng)
    resumed = get_batch(memmap, 4, 8, rng_from_state(saved))
    np.testing.assert_array_equal(expected[0], resumed[0])
    with pytest.raises(DataError, match="bit generator"):
        rng_from_state({"bit_generator": "Nope"})


def test_get_batch_errors():
    with pytest.raises(DataError, match="fewer than block_size"):
        get_batch(np.arange(8), 2, 8, np.random.default_rng(0))
    with pytest.raises(DataError, match=">= 1"):
        get_batch(np.arange(100), 0, 8, np.random.default_rng(0))


def test_token_dtype():
    assert token_dtype(65) == np.uint16 and token_dtype(50257) == np.uint16
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


# ---- padded examples ---------------------------------------------------------------------------
EXAMPLES = [
    # ids, mask (1 = response)
    (np.array([5, 6, 7, 8, 9]), np.array([0, 0, 1, 1, 1], dtype=np.uint8)),
    (np.array([1, 2, 3]), np.array([0, 1, 1], dtype=np.uint8)),
]


def test_collate_pads_and_masks_prompt():
    x, y = collate_examples(EXAMPLES, block_size=16, pad_id=0)
    assert x.shape == y.shape == (2, 4)  # the longest row: 5 tokens -> 4 positions
    np.testing.assert_array_equal(x, [[5, 6, 7, 8], [1, 2, 0, 0]])
    # targets: next token if it is a response token, else -100; padding -100
    np.testing.assert_array_equal(y, [[-100, 7, 8, 9], [2, 3, -100, -100]])


def test_collate_loss_on_all_and_pad_to_block():
    x, y = collate_examples(EXAMPLES, block_size=6, pad_id=99, loss_on="all", pad_to_block=True)
    np.testing.assert_array_equal(x, [[5, 6, 7, 8, 99, 99], [1, 2, 99, 99, 99, 99]])
    np.testing.assert_array_equal(y, [[6, 7, 8, 9, -100, -100], [2, 3] + [-100] * 4])
    with pytest.raises(DataError, match="loss_on"):
        collate_examples(EXAMPLES, 6, 0, loss_on="prompt")


def test_collate_truncates_to_block_size():
    x, y = collate_examples(EXAMPLES, block_size=2, pad_id=0)
    np.testing.assert_array_equal(x, [[5, 6], [1, 2]])
    np.testing.assert_array_equal(y, [[IGNORE_INDEX, 7], [2, 3]])


# ---- prepared folders --------------------------------------------------------------------------
ALPACA = [
    {"instruction": f"Say {w}.", "input": "" if i % 2 else "loudly", "output": f"{w}!"}
    for i, w in enumerate(["hi", "yo", "hey", "bye", "ok", "no", "yes", "why", "who", "how"])
]


@pytest.fixture
def examples_folder(tmp_path):
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps(ALPACA), encoding="utf-8")
    return prepare(src, tmp_path / "prep", tokenizer="char", val_fraction=0.2, seed=0)


def test_token_dataset_examples_batches(examples_folder):
    ds = TokenDataset(examples_folder)
    assert ds.layout == "examples" and ds.num_examples("train") == 8
    tok = ds.tokenizer()
    x, y = ds.get_batch("train", 3, 512, np.random.default_rng(0))
    for row_x, row_y in zip(x, y):
        real = row_x[row_y != IGNORE_INDEX]  # positions whose next token is learned
        learned = row_y[row_y != IGNORE_INDEX]
        assert len(real) > 0 and learned[-1] == tok.eot_id  # the response ends with eot
        assert tok.decode(learned[:-1]).endswith("!")
        assert "### Response:" not in tok.decode(learned[:-1])
    a = ds.get_batch("val", 2, 64, np.random.default_rng(5))
    b = ds.get_batch("val", 2, 64, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])


def test_example_loader_epochs_and_resume(examples_folder):
    ds = TokenDataset(examples_folder)
    loader = ExampleLoader(ds, "train", 3, 256, seed=1)
    first_epoch = [loader.next_batch()[0] for _ in range(2)]  # 6 of 8 examples
    state = json.loads(json.dumps(loader.state_dict()))
    assert state == {"seed": 1, "epoch": 0, "cursor": 6}
    cont = [loader.next_batch()[0] for _ in range(3)]  # crosses into epoch 1
    assert loader.epoch == 1
    again = ExampleLoader(ds, "train", 3, 256, seed=1)
    again.load_state_dict(state)
    for a, b in zip(cont, [again.next_batch()[0] for _ in range(3)]):
        np.testing.assert_array_equal(a, b)
    # one epoch visits every example exactly once
    seen = ExampleLoader(ds, "train", 8, 256, seed=1, shuffle=True)
    rows = {tuple(r[r != ds.pad_id]) for r in seen.next_batch()[0]}
    assert len(rows) == 8
    assert first_epoch[0].shape[0] == 3


def test_token_dataset_bad_folders(tmp_path, examples_folder):
    with pytest.raises(DataError, match="no prepared dataset"):
        TokenDataset(tmp_path / "nothing")
    ds = TokenDataset(examples_folder)
    with pytest.raises(DataError, match="no split 'test'"):
        ds.tokens("test")
    (examples_folder / "train.bin").write_bytes(b"\x00\x00")  # truncated
    with pytest.raises(DataError, match="corrupt"):
        TokenDataset(examples_folder).tokens("train")
    (examples_folder / "meta.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        TokenDataset(examples_folder)
