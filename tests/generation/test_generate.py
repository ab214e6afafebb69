"""Generation in both twins: KV cache == recomputation, sampling settings, stops, the CLI.

Most tests run once per twin (the `twin` fixture: "numpy" or "torch"); the torch model is
built from the numpy model's parameters, so both twins share every expected answer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import twin_named

import torch_gpt
from numpy_gpt import GPT, GPTConfig
from numpy_gpt.cli.main import main
from numpy_gpt.generation import generate as np_gen
from numpy_gpt.generation.sampling import (
    SamplingConfig,
    SamplingError,
    StopStrings,
    TextStream,
    stream_text,
)
from numpy_gpt.tokenizers import BPETokenizer, CharTokenizer
from torch_gpt import generate as t_gen

ROOT = Path(__file__).resolve().parents[2]
TINY = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16)
GEN = {"numpy": np_gen, "torch": t_gen}


def numpy_model(config: GPTConfig = TINY, weight_scale: float = 1.0) -> GPT:
    """float64 model with decisive logits (ln_f scaled) and, optionally, larger weights so
    that attention is far from uniform."""
    model = GPT(config, dtype="float64", seed=0)
    for p in model.params.values():
        if p.ndim == 2:
            p *= weight_scale
    model.params["transformer.ln_f.weight"] *= 40.0
    return model


def as_twin(twin: str, model: GPT):
    if twin == "numpy":
        return model
    return torch_gpt.GPT.from_params(model.config, model.params).eval()


def constant_model(logits: list[float], twin: str = "numpy"):
    """A model whose logits are `logits` at every position, whatever the input: ln_f's
    weight is 0, so its output is its bias e_0, and the untied head's column 0 is `logits`."""
    config = GPTConfig(vocab_size=len(logits), block_size=8, n_layer=1, n_head=1, n_embd=4,
                       tie_weights=False)
    model = GPT(config, dtype="float64", seed=0)
    model.params["transformer.ln_f.weight"][:] = 0.0
    model.params["transformer.ln_f.bias"][:] = [1.0, 0.0, 0.0, 0.0]
    model.params["lm_head.weight"][:] = 0.0
    model.params["lm_head.weight"][:, 0] = logits
    return as_twin(twin, model)


@pytest.fixture(params=["numpy", "torch"])
def twin(request) -> str:
    return request.param


def tokens(twin: str, model, prompt, **settings) -> list[int]:
    return list(GEN[twin].generate(model, prompt, **settings))


def logits_np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ---------------------------------------------------------------------- KV cache


def test_kv_cache_equals_full_recompute_past_block_size(twin):
    ref = numpy_model(weight_scale=4.0)
    model = as_twin(twin, ref)
    rng = np.random.default_rng(0)
    S = TINY.block_size
    seq = rng.integers(0, TINY.vocab_size, 3 * S).tolist()
    decoder = GEN[twin].Decoder(model, seq[:2])
    for n in range(2, len(seq)):
        expected = ref.forward(np.array([seq[:n][-S:]]))[0][0, -1]
        got = logits_np(decoder.logits)
        assert np.abs(got - expected).max() <= 1e-12 * np.abs(expected).max(), n
        assert decoder.context == seq[:n][-S:]
        decoder.append(seq[n])


def test_kv_cache_chunks_equal_one_forward(twin):
    ref = numpy_model(weight_scale=4.0)
    model = as_twin(twin, ref)
    idx = np.random.default_rng(1).integers(0, TINY.vocab_size, (2, TINY.block_size))
    expected = ref.forward(idx)[0]
    if twin == "numpy":
        cache = np_gen.KVCache(TINY, batch_size=2)
        parts = [np_gen.forward_cached(model, idx[:, a:b], cache) for a, b in
                 ((0, 3), (3, 4), (4, 8))]
    else:
        cache = t_gen.KVCache(TINY.n_layer, TINY.block_size)
        parts = [t_gen.forward_cached(model, torch.from_numpy(idx[:, a:b]), cache).numpy()
                 for a, b in ((0, 3), (3, 4), (4, 8))]
    got = np.concatenate(parts, axis=1)
    assert np.abs(got - expected).max() <= 1e-12 * np.abs(expected).max()
    assert cache.length == TINY.block_size


# ---------------------------------------------------------------------- decoding settings


def test_greedy_is_deterministic_and_cache_invariant(twin):
    model = as_twin(twin, numpy_model())
    runs = [tokens(twin, model, [1, 2], max_new_tokens=20, greedy=True, use_kv_cache=c)
            for c in (True, True, False)]
    assert runs[0] == runs[1] == runs[2]
    assert len(runs[0]) == 20


def test_top_k_1_and_tiny_top_p_equal_greedy(twin):
    model = as_twin(twin, numpy_model())
    greedy = tokens(twin, model, [3], max_new_tokens=15, greedy=True)
    assert tokens(twin, model, [3], max_new_tokens=15, top_k=1, seed=5) == greedy
    assert tokens(twin, model, [3], max_new_tokens=15, top_p=1e-9, seed=5) == greedy


def test_twins_generate_identical_tokens():
    ref = numpy_model()
    model = as_twin("torch", ref)
    for settings in ({"greedy": True}, {"temperature": 1.3, "seed": 2},
                     {"top_k": 4, "top_p": 0.9, "repetition_penalty": 1.2, "seed": 3}):
        a = tokens("numpy", ref, [1, 2, 3], max_new_tokens=24, **settings)
        assert tokens("torch", model, [1, 2, 3], max_new_tokens=24, **settings) == a


def test_same_seed_same_sample_different_seed_differs(twin):
    model = as_twin(twin, numpy_model())
    a = tokens(twin, model, [0], max_new_tokens=30, temperature=2.0, seed=7)
    assert tokens(twin, model, [0], max_new_tokens=30, temperature=2.0, seed=7) == a
    assert tokens(twin, model, [0], max_new_tokens=30, temperature=2.0, seed=8) != a
    rng = np.random.default_rng(7)  # an explicit Generator is the same stream as seed=7
    assert tokens(twin, model, [0], max_new_tokens=30, temperature=2.0, rng=rng) == a


def test_repetition_penalty_known_answer(twin):
    """CTRL/HF: seen positive logits are divided by r, seen negative ones multiplied."""
    g = GEN[twin]
    logits, seen = np.array([2.0, -1.0, 0.5, -0.5]), np.array([True, True, False, False])
    if twin == "torch":
        logits, seen = torch.from_numpy(logits), torch.from_numpy(seen)
    out = g.penalized_logits(logits, seen, SamplingConfig(repetition_penalty=2.0))
    np.testing.assert_array_equal(logits_np(out), [1.0, -2.0, 0.5, -0.5])


def test_repetition_penalty_lowers_repeats(twin):
    """Constant logits 2.0 > 1.9 > ... : greedy repeats token 0 forever; with r = 2 a seen
    token's logit halves, so each unseen token wins in turn until all have been seen."""
    model = constant_model([2.0, 1.9, 1.8, 1.7, 1.6, 1.5], twin)
    plain = tokens(twin, model, [5], max_new_tokens=6, greedy=True)
    penalised = tokens(twin, model, [5], max_new_tokens=6, greedy=True, repetition_penalty=2.0)
    assert plain == [0] * 6
    assert penalised == [0, 1, 2, 3, 4, 0]  # 5 was in the prompt; then all seen: 0 again
    assert len(set(penalised)) > len(set(plain))


def test_top_k_keeps_ties_and_top_p_known_answer(twin):
    g = GEN[twin]
    seen = np.zeros(4, dtype=bool)
    topk = np.array([1.0, 3.0, 2.0, 3.0])
    probs = np.array([0.1, 0.5, 0.3, 0.1])
    if twin == "torch":
        topk, probs, seen = torch.from_numpy(topk), torch.from_numpy(probs), torch.from_numpy(seen)
    kept = logits_np(g.sampling_probs(topk, seen, SamplingConfig(top_k=2))) > 0
    assert kept.tolist() == [False, True, False, True]  # the two 3.0s
    logp = np.log(probs) if twin == "numpy" else torch.log(probs)
    # sorted 0.5, 0.3, 0.1, 0.1: mass before each is 0, 0.5, 0.8, 0.9
    kept = logits_np(g.sampling_probs(logp, seen, SamplingConfig(top_p=0.6))) > 0
    assert kept.tolist() == [False, True, True, False]
    kept = logits_np(g.sampling_probs(logp, seen, SamplingConfig(top_p=0.5))) > 0
    assert kept.tolist() == [False, True, False, False]


@pytest.mark.parametrize("u, expected", [(0.0, 0), (0.25, 2), (0.5, 2), (0.75, 3), (0.999, 3)])
def test_draw_is_first_cumsum_above_u(twin, u, expected):
    """probs 0.25, 0, 0.5, 0.25: cumsum 0.25, 0.25, 0.75, 1; the zero token is never drawn."""
    probs = np.array([0.25, 0.0, 0.5, 0.25])
    probs = probs if twin == "numpy" else torch.from_numpy(probs)
    assert GEN[twin].draw_token(probs, u) == expected


# ---------------------------------------------------------------------- stops and context


def test_stop_token_stops_and_is_not_yielded(twin):
    model = constant_model([2.0, 1.9, 1.8, 1.7, 1.6, 1.5], twin)
    out = tokens(twin, model, [5], max_new_tokens=6, greedy=True, repetition_penalty=2.0,
                 stop_ids=[3])
    assert out == [0, 1, 2]


def test_stop_string_stops_and_is_trimmed(twin):
    """The constant model with the penalty writes "abcdef" (ids 0..5 = a..f)."""
    tok = CharTokenizer("abcdef")
    model = constant_model([2.0, 1.9, 1.8, 1.7, 1.6, 1.5], twin)
    text = "".join(GEN[twin].generate_text(model, tok, "f", max_new_tokens=6, greedy=True,
                                           repetition_penalty=2.0, stop_strings=["cd", "x"]))
    assert text == "ab"
    full = "".join(GEN[twin].generate_text(model, tok, "f", max_new_tokens=6, greedy=True,
                                           repetition_penalty=2.0, stop_strings=["ez"]))
    assert full == "abcdea"  # "e" was held back as a possible start of "ez", then released


def test_stop_strings_split_across_chunks():
    stops = StopStrings(["<END>"])
    assert stops.feed("hello <E") == ("hello ", False)  # "<E" may begin "<END>": held back
    assert stops.feed("N") == ("", False)
    assert stops.feed("D> more") == ("", True)
    stops = StopStrings(["<END>"])
    assert stops.feed("a <EN") == ("a ", False)
    assert stops.feed("x") == ("<ENx", False)


def test_stream_text_closes_the_token_stream():
    tok = CharTokenizer("abc")
    closed = []

    def gen():
        try:
            yield from [0, 1, 2, 0, 1, 2]
        finally:
            closed.append(True)

    assert "".join(stream_text(gen(), tok, ["ca"])) == "ab"
    assert closed == [True]


def test_text_stream_never_splits_a_multibyte_character():
    tok = BPETokenizer([])  # no merges: one token per byte, so "é" and "€" span 2 and 3 tokens
    text = "héllo € ok"
    ids = tok.encode(text)
    stream = TextStream(tok)
    pieces = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_prompt_longer_than_block_size_is_cropped(twin):
    model = as_twin(twin, numpy_model())
    S = TINY.block_size
    long_prompt = np.random.default_rng(3).integers(0, TINY.vocab_size, 3 * S).tolist()
    a = tokens(twin, model, long_prompt, max_new_tokens=5, greedy=True)
    assert a == tokens(twin, model, long_prompt[-S:], max_new_tokens=5, greedy=True)
    assert GEN[twin].Decoder(model, long_prompt).context == long_prompt[-S:]


def test_generation_past_block_size_with_and_without_cache(twin):
    model = as_twin(twin, numpy_model())
    n = 3 * TINY.block_size
    for settings in ({"greedy": True}, {"temperature": 1.5, "top_p": 0.95, "seed": 1}):
        a = tokens(twin, model, [4], max_new_tokens=n, use_kv_cache=True, **settings)
        b = tokens(twin, model, [4], max_new_tokens=n, use_kv_cache=False, **settings)
        assert a == b and len(a) == n


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_generation_matches_numpy():
    ref = numpy_model(weight_scale=4.0)
    model = torch_gpt.GPT.from_params(TINY, ref.params, device="cuda").eval()
    seq = np.random.default_rng(0).integers(0, TINY.vocab_size, 2 * TINY.block_size).tolist()
    decoder = t_gen.Decoder(model, seq[:2])
    for n in range(2, len(seq)):
        expected = ref.forward(np.array([seq[:n][-TINY.block_size:]]))[0][0, -1]
        assert np.abs(logits_np(decoder.logits) - expected).max() <= 1e-12 * np.abs(
            expected).max()
        decoder.append(seq[n])
    for settings in ({"greedy": True}, {"temperature": 1.3, "top_k": 5, "top_p": 0.9,
                                        "seed": 2}):
        expected = tokens("numpy", ref, [1, 2], max_new_tokens=20, **settings)
        assert tokens("torch", model, [1, 2], max_new_tokens=20, **settings) == expected


def test_zero_new_tokens_yields_nothing(twin):
    assert tokens(twin, as_twin(twin, numpy_model()), [1], max_new_tokens=0) == []


# ---------------------------------------------------------------------- bad settings

BAD_SETTINGS = [
    ({"temperature": 0.0}, "--greedy"),
    ({"temperature": -1.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": 2.5}, "top_k"),
    ({"top_k": True}, "top_k"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"repetition_penalty": 0.0}, "repetition_penalty"),
    ({"repetition_penalty": -1.2}, "repetition_penalty"),
    ({"max_new_tokens": -1}, "max_new_tokens"),
    ({"max_new_tokens": 2.0}, "max_new_tokens"),
    ({"stop_ids": [-1]}, "stop_ids"),
    ({"stop_ids": [TINY.vocab_size]}, "stop_ids"),
    ({"stop_strings": [""]}, "stop strings"),
    ({"seed": -3}, "seed"),
    ({"greedy": "yes"}, "greedy"),
    ({"temp": 0.5}, "unknown generation setting"),
]


@pytest.mark.parametrize("settings, words", BAD_SETTINGS,
                         ids=[next(iter(s)) + "=" + repr(next(iter(s.values())))
                              for s, _ in BAD_SETTINGS])
def test_bad_setting_raises_one_clear_error(twin, settings, words):
    model = as_twin(twin, numpy_model())
    with pytest.raises(SamplingError) as e:
        GEN[twin].generate(model, [1], **settings)  # raises at the call, before iterating
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("prompt, words", [([], "non-empty"), ([TINY.vocab_size], "outside"),
                                           ([[1, 2]], "1-D"), ([1.5], "integers")])
def test_bad_prompt_raises(twin, prompt, words):
    with pytest.raises(SamplingError, match=words):
        GEN[twin].generate(as_twin(twin, numpy_model()), prompt)


def test_greedy_accepts_any_temperature():
    assert SamplingConfig(greedy=True, temperature=0.0).is_greedy
    assert SamplingConfig(top_k=1).is_greedy


# ---------------------------------------------------------------------- the sample CLI

SHAKESPEARE_CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A char-level float64 checkpoint written by each twin, and one without a tokenizer."""
    root = tmp_path_factory.mktemp("ckpt")
    tok = CharTokenizer(SHAKESPEARE_CHARS)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2,
                       n_embd=8)
    model = GPT(config, dtype="float64", seed=0)
    model.save(root / "numpy", tokenizer=tok)
    torch_gpt.GPT.from_params(config, model.params).save(root / "torch", tokenizer=tok)
    model.save(root / "notok")
    bpe = BPETokenizer([])
    GPT(config.replace(vocab_size=bpe.vocab_size), dtype="float64").save(root / "bpe",
                                                                         tokenizer=bpe)
    return {"numpy": root / "numpy", "torch": root / "torch", "notok": root / "notok",
            "bpe": root / "bpe"}


def sample(capsys, twin: str, *args: str) -> tuple[int, str, str]:
    rc = main(["sample", *args], twin=twin_named(twin))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_streams_samples_and_twins_agree(capsys, checkpoints):
    args = ["--prompt", "ROMEO:", "--max-new-tokens", "40", "--num-samples", "2", "--seed", "3"]
    outputs = {}
    for writer in ("numpy", "torch"):
        for twin in ("numpy", "torch"):
            rc, out, err = sample(capsys, twin, "--ckpt", str(checkpoints[writer]), *args)
            assert rc == 0 and err == ""
            outputs[writer, twin] = out
    first = outputs["numpy", "numpy"]
    assert all(out == first for out in outputs.values())  # either writer, either twin
    samples = first.split("\n" + "-" * 15 + "\n")
    assert len(samples) == 2 and all(s.startswith("ROMEO:") for s in samples)
    assert all(len(s.rstrip("\n")) == len("ROMEO:") + 40 for s in samples)


def test_cli_no_kv_cache_greedy_stop_and_prompt_file(capsys, checkpoints, tmp_path):
    ckpt = str(checkpoints["numpy"])
    rc, cached, _ = sample(capsys, "numpy", "--ckpt", ckpt, "--greedy",
                           "--max-new-tokens", "30", "--prompt", "A")
    rc2, uncached, _ = sample(capsys, "torch", "--ckpt", ckpt, "--greedy", "--no-kv-cache",
                              "--max-new-tokens", "30", "--prompt", "A", "--device", "cpu")
    assert rc == rc2 == 0 and cached == uncached
    stop = cached[3:5]  # a string the greedy text contains, after its first 3 characters
    rc, out, _ = sample(capsys, "numpy", "--ckpt", ckpt, "--greedy", "--max-new-tokens", "30",
                        "--prompt", "A", "--stop", stop)
    assert rc == 0 and out == cached[: cached.index(stop)] + "\n"
    (tmp_path / "p.txt").write_text("A", encoding="utf-8")
    rc, out, _ = sample(capsys, "numpy", "--ckpt", ckpt, "--greedy", "--max-new-tokens", "30",
                        "--prompt-file", str(tmp_path / "p.txt"))
    assert rc == 0 and out == cached


def test_cli_bpe_default_prompt_is_the_end_of_text_token(capsys, checkpoints):
    rc, out, err = sample(capsys, "numpy", "--ckpt", str(checkpoints["bpe"]),
                          "--max-new-tokens", "20", "--temperature", "1.0")
    assert rc == 0 and err == "" and not out.startswith("<|endoftext|>")


@pytest.mark.parametrize("args, words", [
    (["--ckpt", "{missing}"], "no checkpoint folder"),
    (["--ckpt", "{notok}"], "tokenizer.json"),
    (["--ckpt", "{numpy}", "--temperature", "0"], "use --greedy"),
    (["--ckpt", "{numpy}", "--top-p", "2"], "top_p"),
    (["--ckpt", "{numpy}", "--prompt", "ROMEO€"], "'€'"),
    (["--ckpt", "{numpy}", "--prompt-file", "{missing}"], "no such file"),
    (["--ckpt", "{numpy}", "--num-samples", "0"], "--num-samples"),
])
def test_cli_errors_are_one_line(capsys, checkpoints, tmp_path, twin, args, words):
    paths = {k: str(v) for k, v in checkpoints.items()} | {"missing": str(tmp_path / "nope")}
    rc, out, err = sample(capsys, twin, *[a.format(**paths) for a in args])
    assert rc == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err


def test_cli_corrupt_checkpoint(capsys, checkpoints, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in checkpoints["numpy"].iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "model.safetensors").write_bytes(b"garbage")
    rc, _, err = sample(capsys, "numpy", "--ckpt", str(bad))
    assert rc == 1 and "corrupt" in err and err.count("\n") == 1


def test_python_m_numpy_gpt_sample(checkpoints):
    proc = subprocess.run(
        [sys.executable, "-m", "numpy_gpt", "sample", "--ckpt", str(checkpoints["numpy"]),
         "--prompt", "ROMEO:", "--max-new-tokens", "10", "--temperature", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: temperature must be")
    proc = subprocess.run(
        [sys.executable, "-m", "numpy_gpt", "sample", "--ckpt", str(checkpoints["numpy"]),
         "--prompt", "ROMEO:", "--max-new-tokens", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("ROMEO:")


def test_numpy_sampling_does_not_import_torch():
    code = ("import sys, numpy_gpt.generation.generate, numpy_gpt.cli.sample; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


def test_text_after_a_shown_prompt_joins_it_as_one_decode_would():
    """A word tokenizer puts a space between words: the first generated word must not be glued
    to the prompt's last one (sample printed 'how are you?especially'). With the prompt's ids
    as context the stream is exactly decode(prompt + generated) minus decode(prompt)."""
    from numpy_gpt.tokenizers import WordTokenizer

    tok = WordTokenizer(["how", "are", "you", "?", "fine", "thanks", "."])
    prompt, new = tok.encode("how are you ?"), tok.encode("fine thanks .")
    joined = "".join(stream_text(iter(new), tok, context=prompt))
    assert tok.decode(prompt) + joined == tok.decode(prompt + new) == "how are you? fine thanks."
    assert "".join(stream_text(iter(new), tok)) == "fine thanks."  # prompt not shown: no space


def test_cli_echoes_the_prompt_as_the_model_reads_it(capsys, tmp_path):
    """A word tokenizer lowercases: `--prompt "How are YOU? <END>"` is read as
    "how are you? <END>", and that is what the echo shows (it used to echo the prompt as
    typed, capitals the model never saw); the whole line is one decode of prompt + sample."""
    from numpy_gpt.tokenizers import WordTokenizer

    tok = WordTokenizer.train("how are you ? i am fine . hello there")
    GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=8)
        ).save(tmp_path / "words", tokenizer=tok)
    rc, out, err = sample(capsys, "numpy", "--ckpt", str(tmp_path / "words"), "--prompt",
                          "How are YOU? <END>", "--max-new-tokens", "4", "--greedy")
    assert rc == 0 and err == ""
    assert out.startswith("how are you? <END>")
    ids = tok.encode("how are you? <END>", allowed_special="all")
    assert out.rstrip("\n") == tok.decode(tok.encode(out.rstrip("\n"), allowed_special="all"))
    assert len(tok.encode(out, allowed_special="all")) == len(ids) + 4

