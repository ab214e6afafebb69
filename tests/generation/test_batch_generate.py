"""Batched generation (numpy_gpt/generation/batch_generate.py, torch_gpt/batch_generate.py):
B prompts of different lengths decoded together give, row by row, exactly the tokens of
generate() alone.

The cross-twin rows are parity cases (generate/batched-*); here each twin against its own
single-sequence generate(), the stop and crop edges, the fake-CuPy run, and the settings.
"""

import math

import fake_cupy
import numpy as np
import pytest
from conftest import twin_named

import torch_gpt
from numpy_gpt import GPT, GPTConfig
from numpy_gpt.generation.batch_generate import BatchDecoder, generate_batch
from numpy_gpt.generation.generate import Decoder, generate
from numpy_gpt.generation.sampling import SamplingError, row_rngs
from torch_gpt.batch_generate import generate_batch as torch_generate_batch
from torch_gpt.generate import generate as torch_generate

CFG = GPTConfig(vocab_size=23, block_size=12, n_layer=2, n_head=2, n_embd=16)
PROMPT_LENGTHS = (1, 5, 3, 12, 20)  # 12 fills the context, 20 is cropped at once
SETTINGS = [
    {"greedy": True},
    {"temperature": 1.0, "seed": 3},
    {"temperature": 0.9, "top_k": 5, "top_p": 0.9, "repetition_penalty": 1.3, "seed": 4},
]


def decisive_model(dtype: str = "float64", device: str = "cpu", config: GPTConfig = CFG) -> GPT:
    """Logits with std ~3 (as parity/cases/generate.py): sampled tokens are far from ties."""
    model = GPT(config, dtype=dtype, seed=1, device=device)
    model.params["transformer.ln_f.weight"] *= 3.0 / (0.02 * math.sqrt(config.n_embd))
    return model


def prompts(seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, CFG.vocab_size, n).tolist() for n in PROMPT_LENGTHS]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_numpy_rows_equal_generate_alone(settings, use_kv_cache):
    model, ps = decisive_model(), prompts()
    rows = generate_batch(model, ps, max_new_tokens=30, use_kv_cache=use_kv_cache, **settings)
    rngs = row_rngs(settings.get("seed"), len(ps))
    alone = [list(generate(model, p, max_new_tokens=30, rng=r, **settings))
             for p, r in zip(ps, rngs)]
    assert rows == alone and all(len(r) == 30 for r in rows)


@pytest.mark.parametrize("settings", SETTINGS)
def test_torch_rows_equal_generate_alone_and_numpy(settings):
    ref, ps = decisive_model(), prompts(1)
    model = torch_gpt.GPT.from_params(CFG, ref.params).eval()
    rows = torch_generate_batch(model, ps, max_new_tokens=30, **settings)
    rngs = row_rngs(settings.get("seed"), len(ps))
    alone = [list(torch_generate(model, p, max_new_tokens=30, rng=r, **settings))
             for p, r in zip(ps, rngs)]
    assert rows == alone == generate_batch(ref, ps, max_new_tokens=30, **settings)


# Llama-shaped: RoPE at per-row positions, 2 K/V heads for 4 query heads (test_llama_generate)
LLAMA = CFG.replace(n_head=4, norm="rmsnorm", position="rope", mlp="swiglu", n_kv_head=2,
                    bias=False, tie_weights=False)


@pytest.mark.parametrize("config", [CFG, LLAMA], ids=["gpt2", "llama"])
def test_batch_logits_equal_one_decoder_per_row(config):
    model, ps = decisive_model(config=config), prompts(2)
    forced = np.random.default_rng(3).integers(0, CFG.vocab_size, (len(ps), 15))
    batch = BatchDecoder(model, ps)
    steps = [batch.logits.copy()] + [batch.append(t.tolist()).copy() for t in forced.T]
    for b, p in enumerate(ps):
        single = Decoder(model, p)
        alone = [single.logits] + [single.append(int(t)) for t in forced[b]]
        np.testing.assert_allclose(np.stack([s[b] for s in steps]), np.stack(alone),
                                   rtol=0, atol=1e-12 * np.abs(alone).max())


def test_each_row_stops_at_its_own_stop_token():
    model, ps = decisive_model(), prompts(4)
    free = generate_batch(model, ps, max_new_tokens=20, seed=5, temperature=1.0)
    stop = free[1][3]  # row 1 produces it as its 4th token: it ends there
    rows = generate_batch(model, ps, max_new_tokens=20, seed=5, temperature=1.0,
                          stop_ids=(stop,))
    for free_row, row in zip(free, rows):
        cut = free_row.index(stop) if stop in free_row else len(free_row)
        assert row == free_row[:cut]
    assert len(rows[1]) <= 3


def test_finished_rows_do_not_disturb_the_others():
    """A row that stops at its first token rides along unseen; the other rows are unchanged."""
    model, ps = decisive_model(), prompts(5)
    first = generate_batch(model, ps[:1], max_new_tokens=1, greedy=True)[0][0]
    rows = generate_batch(model, ps, max_new_tokens=15, greedy=True, stop_ids=(first,))
    assert rows[0] == []
    for p, row in zip(ps[1:], rows[1:]):
        assert row == list(generate(model, p, max_new_tokens=15, greedy=True,
                                    stop_ids=(first,)))


def test_batch_of_one_is_generate():
    model = decisive_model("float32")
    p = prompts()[1]
    assert generate_batch(model, [p], max_new_tokens=25, seed=9, top_k=7) == [
        list(generate(model, p, max_new_tokens=25, seed=9, top_k=7))]


def test_on_fake_cupy_equals_cpu():
    ps = prompts(6)
    cpu = generate_batch(decisive_model(), ps, max_new_tokens=16, seed=2, temperature=0.8)
    with fake_cupy.installed():
        for cache in (True, False):
            dev = generate_batch(decisive_model(device="cuda"), ps, max_new_tokens=16, seed=2,
                                 temperature=0.8, use_kv_cache=cache)
            assert dev == cpu


def test_settings_are_checked_before_decoding():
    model = decisive_model()
    with pytest.raises(SamplingError, match="at least one prompt"):
        generate_batch(model, [])
    with pytest.raises(SamplingError, match="non-empty"):
        generate_batch(model, [[1, 2], []])
    with pytest.raises(SamplingError, match="outside"):
        generate_batch(model, [[1, 99]])
    with pytest.raises(SamplingError, match="generators"):
        generate_batch(model, [[1], [2]], rngs=[np.random.default_rng(0)])
    assert generate_batch(model, [[1], [2, 3]], max_new_tokens=0) == [[], []]


def test_row_rngs_row_zero_is_the_single_seeded_stream():
    a, b = row_rngs(7, 3), row_rngs(7, 3)
    assert a[0].random() == np.random.default_rng(7).random()
    assert [r.random() for r in a[1:]] == [r.random() for r in b[1:]]
    assert len({r.random() for r in row_rngs(7, 4)}) == 4


def test_sample_cli_decodes_num_samples_together(capsys, tmp_path):
    """`sample --num-samples 3`: sample i is the one-sample text with row_rngs(seed)[i], so the
    first is what --num-samples 1 prints; either twin prints the same."""
    from numpy_gpt.cli.main import main
    from numpy_gpt.cli.sample import Sampler
    from numpy_gpt.generation.sampling import SamplingConfig
    from numpy_gpt.tokenizers import CharTokenizer

    tok = CharTokenizer("\n abcdefghijklmnopqrstuvwxyz")
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=8)
    GPT(cfg, dtype="float64", seed=0).save(tmp_path, tokenizer=tok)
    args = ["sample", "--ckpt", str(tmp_path), "--prompt", "ab", "--max-new-tokens", "24",
            "--seed", "3", "--stop", "q"]
    outs = {}
    for twin in ("numpy", "torch"):
        for n in ("1", "3"):
            assert main([*args, "--num-samples", n], twin=twin_named(twin)) == 0
            outs[twin, n] = capsys.readouterr().out
    assert outs["numpy", "3"] == outs["torch", "3"] and outs["numpy", "1"] == outs["torch", "1"]
    samples = outs["numpy", "3"].split("\n" + "-" * 15 + "\n")
    assert len(samples) == 3 and samples[0] + "\n" == outs["numpy", "1"]
    sampler = Sampler.load(twin_named("numpy"), tmp_path)
    config = SamplingConfig(max_new_tokens=24, temperature=0.8, top_k=200, stop_strings=("q",))
    for sample, rng in zip(samples, row_rngs(3, 3)):
        assert sample.rstrip("\n") == "ab" + "".join(sampler.text("ab", config, rng))
