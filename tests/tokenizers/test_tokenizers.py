"""Tokenizers: known answers, round trips, GPT-2 == tiktoken, save/load, bad input."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpy_gpt.data.dataset import DataError
from numpy_gpt.data.datasets import find_data_file
from numpy_gpt.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    GPT2Tokenizer,
    TokenizerError,
    WordTokenizer,
    load_tokenizer,
    load_tokenizer_dict,
)
from numpy_gpt.tokenizers.bytelevel import GPT2_SPLIT_PATTERN

SAMPLE = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
    "You are all resolved rather to die than to famish? I'm sure they'll say 1234 times.\n"
    "Ünïcödé — 日本語 😀 tabs\tand   spaces  \n"
)


def _data_file(rel: str):
    try:
        return find_data_file(rel)
    except DataError:
        return None


GPT2_FILES = (_data_file("gpt2/encoder.json"), _data_file("gpt2/vocab.bpe"))
SHAKESPEARE = _data_file("tinyshakespeare/input.txt")
needs_gpt2 = pytest.mark.skipif(None in GPT2_FILES, reason="GPT-2 encoder.json/vocab.bpe absent")


@pytest.fixture(scope="module")
def gpt2() -> GPT2Tokenizer:
    if None in GPT2_FILES:
        pytest.skip("GPT-2 encoder.json/vocab.bpe absent")
    return GPT2Tokenizer.from_files(*GPT2_FILES)


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    """tiktoken's gpt2 Encoding built offline from the same two files."""
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    if None in GPT2_FILES:
        pytest.skip("GPT-2 encoder.json/vocab.bpe absent")
    encoder, vocab = (str(p) for p in GPT2_FILES)
    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=vocab, encoder_json_file=encoder)
    return tiktoken.Encoding(
        "gpt2-offline", pat_str=GPT2_SPLIT_PATTERN, mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
    )


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(SAMPLE * 3, 256 + 60)


def test_errors_are_value_errors_of_their_own():
    """The tokenizers sit below the data pipeline and do not know its DataError (prepare
    turns a TokenizerError into one); both are ValueErrors, one line on the command line."""
    assert issubclass(TokenizerError, ValueError) and not issubclass(TokenizerError, DataError)
    assert issubclass(DataError, ValueError)


# ---- BPE ---------------------------------------------------------------------------------------
def test_bpe_wikipedia_example():
    """Wikipedia's "aaabdaaabac" (one regex chunk, bytes a=97 b=98 c=99 d=100):

    counts aa:4 ab:2 ...           -> merge (97, 97) = 256 "aa":  Z a b d Z a b a c
    counts Za:2 ab:2 (tie) ...     -> merge (97, 98) = 257 "ab" (the smaller pair wins a tie)
    counts ZY:2 ...                -> merge (256, 257) = 258:      X d X a c
    so the text encodes to [258, 100, 258, 97, 99] (the same ids as minbpe's test).
    """
    tok = BPETokenizer.train("aaabdaaabac", 256 + 3, special_tokens=())
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"
    assert tok.token_bytes[258] == b"aaab"


def _naive_merges(text: str, n_merges: int) -> list[tuple[int, int]]:
    """minbpe's RegexTokenizer.train (recount every merge), with the smallest pair winning
    ties: the reference the incremental trainer must reproduce."""
    import regex

    chunks = [list(c.encode("utf-8")) for c in regex.findall(GPT2_SPLIT_PATTERN, text)]
    merges = []
    for k in range(n_merges):
        counts: dict[tuple[int, int], int] = {}
        for ids in chunks:
            for p in itertools.pairwise(ids):
                counts[p] = counts.get(p, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        new = []
        for ids in chunks:
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                    out.append(256 + k)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            new.append(out)
        chunks = new
    return merges


def test_bpe_incremental_training_matches_naive_recount():
    text = SAMPLE * 2 + "aaaa aaaaa abab ababab xxxxxxx"
    tok = BPETokenizer.train(text, 256 + 80, special_tokens=())
    assert tok.merges == _naive_merges(text, 80)


def test_bpe_stops_when_out_of_pairs():
    tok = BPETokenizer.train("ab", 1000)
    assert tok.merges == [(97, 98)]
    assert tok.special_tokens == {"<|endoftext|>": 257} and tok.vocab_size == 258


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=60))
def test_bpe_roundtrip_any_text(bpe, text):
    # Hypothesis also draws the string constants of local modules, "<|endoftext|>" among them,
    # which plain encode() refuses by design; either explicit reading of it round-trips.
    for allowed in ("none", "all"):
        assert bpe.decode(bpe.encode(text, allowed_special=allowed)) == text


def test_bpe_special_tokens(bpe):
    eot = bpe.special_tokens["<|endoftext|>"]
    assert eot == bpe.vocab_size - 1 == 256 + len(bpe.merges)
    ids = bpe.encode("hear<|endoftext|>me", allowed_special="all")
    assert ids.count(eot) == 1 and bpe.decode(ids) == "hear<|endoftext|>me"
    with pytest.raises(TokenizerError, match="special token"):
        bpe.encode("hear<|endoftext|>me")  # tiktoken's default: refuse
    plain = bpe.encode("<|endoftext|>", allowed_special="none")
    assert eot not in plain and bpe.decode(plain) == "<|endoftext|>"


def test_bpe_vocab_too_small_for_special_tokens():
    with pytest.raises(TokenizerError, match="too small"):
        BPETokenizer.train("hello", 256, special_tokens=["<|endoftext|>"])


def test_bpe_training_excludes_special_tokens():
    tok = BPETokenizer.train("ab<|endoftext|>ab<|endoftext|>" * 5, 300)
    assert all(b"<|" not in tok.token_bytes[256 + k] for k in range(len(tok.merges)))


# ---- GPT-2 -------------------------------------------------------------------------------------
TRICKY = [
    "Hello world",
    "hello <|endoftext|> world",
    "I'm sure they'll've it; don't, won't, it's, we'd, you're, I've",
    "  leading and trailing spaces  ",
    "whitespace runs:    \n\n\n   \t\t x  \n",
    "numbers 1234567890 3.14159 -42 1e10 ¹²³ ٣٤",
    "unicode: naïve café — 日本語のテキスト, Ελληνικά, русский, 😀👍🏽, ﬁ",
    "<|endoftext|>",
    "\n",
    "",
    "'s 's's ''s",
]


@needs_gpt2
def test_gpt2_known_ids(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode("<|endoftext|>", allowed_special="all") == [50256]
    assert gpt2.vocab_size == 50257 and gpt2.eot_id == 50256


@needs_gpt2
@pytest.mark.parametrize("text", TRICKY)
def test_gpt2_matches_tiktoken(gpt2, tiktoken_gpt2, text):
    assert gpt2.encode(text, allowed_special="all") == tiktoken_gpt2.encode(
        text, allowed_special="all"
    )
    assert gpt2.encode(text, allowed_special="none") == tiktoken_gpt2.encode_ordinary(text)
    assert gpt2.decode(gpt2.encode(text, allowed_special="all")) == text


ALPHABET = st.sampled_from(list(" \n\t'sdmtlvre0123456789aAzZ.,!?-_ééü日本😀") + ["<|endoftext|>"])


@needs_gpt2
@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=40), st.lists(ALPHABET, max_size=30).map("".join)))
def test_gpt2_matches_tiktoken_on_random_text(gpt2, tiktoken_gpt2, text):
    ids = gpt2.encode(text, allowed_special="all")
    assert ids == tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2.decode(ids) == text


@needs_gpt2
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(word=st.text(alphabet="abcdeéth", min_size=129, max_size=400))
def test_gpt2_long_chunks_heap_merge_matches_tiktoken(gpt2, tiktoken_gpt2, word):
    """Chunks over LONG_CHUNK bytes take the heap path; it must merge in the same order."""
    assert gpt2.encode(word) == tiktoken_gpt2.encode(word)


@needs_gpt2
@pytest.mark.skipif(SHAKESPEARE is None, reason="Tiny Shakespeare absent")
def test_gpt2_tiny_shakespeare_matches_tiktoken(gpt2, tiktoken_gpt2):
    text = SHAKESPEARE.read_text(encoding="utf-8")
    ids = gpt2.encode(text)
    assert ids == tiktoken_gpt2.encode(text)
    assert len(ids) == 301_966 + 36_059  # nanoGPT shakespeare: train + val tokens


@needs_gpt2
def test_gpt2_padded_vocab_and_decode_errors(gpt2):
    assert gpt2.model_vocab_size() == 50304 and gpt2.model_vocab_size(pad_to=1) == 50257
    assert gpt2.decode([50256]) == "<|endoftext|>"
    with pytest.raises(TokenizerError, match="50300 is outside"):
        gpt2.decode([15496, 50300])
    with pytest.raises(TokenizerError, match="outside"):
        gpt2.decode([-1])


@needs_gpt2
def test_gpt2_decode_partial_utf8_like_tiktoken(gpt2, tiktoken_gpt2):
    ids = gpt2.encode("日本")
    for k in range(len(ids) + 1):
        assert gpt2.decode(ids[:k]) == tiktoken_gpt2.decode(ids[:k])


@needs_gpt2
def test_gpt2_mismatched_files(tmp_path):
    merges = tmp_path / "vocab.bpe"
    merges.write_text("#version: 0.2\nh e\nĠ t\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match="does not match"):
        GPT2Tokenizer.from_files(GPT2_FILES[0], merges)
    with pytest.raises(TokenizerError, match="not found"):
        GPT2Tokenizer.from_files(tmp_path / "nope.json", merges)


# ---- char and word -----------------------------------------------------------------------------
@pytest.mark.skipif(SHAKESPEARE is None, reason="Tiny Shakespeare absent")
def test_char_tiny_shakespeare_is_nanogpt_vocab():
    text = SHAKESPEARE.read_text(encoding="utf-8")
    tok = CharTokenizer.train(text)
    assert tok.vocab_size == 65
    # nanoGPT shakespeare_char: stoi = {ch: i for i, ch in enumerate(sorted(set(data)))}
    assert tok.encode("\n !$&'") == [0, 1, 2, 3, 4, 5] and tok.encode("a") == [39]
    assert tok.encode("hii there") == [46, 47, 47, 1, 58, 46, 43, 56, 43]
    assert tok.decode(tok.encode(text[:5000])) == text[:5000]


def test_char_unknown_character_error_and_unk():
    tok = CharTokenizer.train("hello world")
    with pytest.raises(TokenizerError, match=r"'Z' \(U\+005A\) at position 6") as e:
        tok.encode("hello Zorld")
    assert "\n" not in str(e.value)
    unk = CharTokenizer.train("hello world", unk=True)
    ids = unk.encode("hello Zorld")
    assert ids[6] == unk.special_tokens["<unk>"] == unk.vocab_size - 1
    assert unk.decode(ids) == "hello <unk>orld"


def test_char_special_tokens_follow_characters():
    tok = CharTokenizer.train("ba<|endoftext|>ab", special_tokens=["<|endoftext|>"])
    assert tok.chars == "ab" and tok.special_tokens == {"<|endoftext|>": 2}
    assert tok.encode("ab<|endoftext|>", allowed_special="all") == [0, 1, 2]
    with pytest.raises(TokenizerError, match="cannot be set"):
        CharTokenizer.train("abc", vocab_size=10)


def test_word_tokenizer():
    text = "The cat sat. The cat ran! The dog, (maybe) didn't."
    tok = WordTokenizer.train(text)
    assert tok.tokenize("The cat, didn't!") == ["the", "cat", ",", "didn't", "!"]
    assert tok.special_tokens == {"<PAD>": 0, "<UNK>": 1, "<END>": 2}
    assert tok.words[:3] == ["the", ".", "cat"]  # most frequent first, ties alphabetical
    ids = tok.encode("The zebra sat (maybe). <END>", allowed_special="all")
    assert ids[1] == 1 and ids[-1] == 2
    assert tok.decode(ids) == "the <UNK> sat (maybe). <END>"
    small = WordTokenizer.train(text, vocab_size=5)
    assert small.vocab_size == 5 and small.words == ["the", "."]
    frequent = WordTokenizer.train(text, min_freq=2)
    assert set(frequent.words) == {"the", "cat", "."}
    cased = WordTokenizer.train(text, lowercase=False)
    assert "The" in cased.words and "the" not in cased.words
    with pytest.raises(TokenizerError, match="too small"):
        WordTokenizer.train(text, vocab_size=3)


def test_allowed_special_forms(bpe):
    with pytest.raises(TokenizerError, match="not special tokens"):
        bpe.encode("x", allowed_special={"<nope>"})
    assert bpe.encode("<|endoftext|>", allowed_special={"<|endoftext|>"}) == [bpe.eot_id]
    with pytest.raises(TypeError):
        bpe.encode("x", allowed_special="some")


# ---- save / load -------------------------------------------------------------------------------
def _all_kinds():
    kinds = [
        CharTokenizer.train(SAMPLE, special_tokens=["<|endoftext|>"], unk=True),
        WordTokenizer.train(SAMPLE, vocab_size=30, lowercase=False),
        BPETokenizer.train(SAMPLE, 256 + 40, special_tokens=["<|endoftext|>", "<|pad|>"]),
    ]
    if None not in GPT2_FILES:
        kinds.append(GPT2Tokenizer.from_files(*GPT2_FILES))
    return kinds


@pytest.mark.parametrize("tok", _all_kinds(), ids=lambda t: t.kind)
def test_save_load_roundtrip(tok, tmp_path):
    path = tok.save(tmp_path / "tok.json")
    d = json.loads(path.read_text(encoding="utf-8"))
    assert d["kind"] == tok.kind and d["format_version"] == 1
    for loaded in (load_tokenizer(path), load_tokenizer_dict(d)):
        assert type(loaded) is type(tok) and loaded.to_dict() == tok.to_dict()
        assert loaded.vocab_size == tok.vocab_size
        assert loaded.special_tokens == tok.special_tokens
        text = SAMPLE + "<|endoftext|>"
        assert loaded.encode(text, allowed_special="all") == tok.encode(
            text, allowed_special="all"
        )
    assert not [p for p in tmp_path.iterdir() if p.name != "tok.json"]  # no temp files left
    assert type(tok).load(path).to_dict() == tok.to_dict()


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(TokenizerError, match="unknown tokenizer kind 'nope'"):
        load_tokenizer_dict({"kind": "nope"})
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "char",\n "chars": }', encoding="utf-8")
    with pytest.raises(TokenizerError, match="line 2 column 11"):
        load_tokenizer(bad)
    with pytest.raises(TokenizerError, match="no tokenizer file"):
        load_tokenizer(tmp_path / "missing.json")
    with pytest.raises(TokenizerError, match="bad char tokenizer"):
        load_tokenizer_dict({"kind": "char"})
    path = CharTokenizer.train("ab").save(tmp_path / "c.json")
    with pytest.raises(TokenizerError, match="holds a char tokenizer, not bpe"):
        BPETokenizer.load(path)
    with pytest.raises(TokenizerError, match="fixed"):
        GPT2Tokenizer.train("text")
