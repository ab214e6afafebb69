"""bench at Llama shapes (issue 25): the named sizes, KV-cache memory measured in both twins'
caches, bench.profile's rmsnorm/rope/swiglu kinds, and a --quick run at llama-tiny.

No timing assertions: the machine is shared; only shapes, counts, kinds and statuses.
"""

import cProfile
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import torch_gpt
from bench import report
from bench.flops import kv_cache_bytes_per_token, matmul_params
from bench.profile import KINDS, breakdown, profile_train_step
from bench.sizes import DEFAULT_SIZES, SIZES, get_size
from numpy_gpt.generation.generate import Decoder
from numpy_gpt.nn.config import param_shapes
from numpy_gpt.nn.model import GPT
from numpy_gpt.nn.model_parts import init_params
from torch_gpt.generate import Decoder as TorchDecoder

ROOT = Path(__file__).resolve().parents[2]
LLAMA_KINDS = ("rmsnorm", "rope", "swiglu")


# ---------------------------------------------------------------------- sizes


def test_llama_sizes_have_the_asked_shapes():
    s = SIZES["llama-6L-384"]
    c = s.config
    assert (c.n_layer, c.n_embd, c.n_head, c.kv_heads, s.seq_len, s.batch_size,
            c.vocab_size) == (6, 384, 6, 2, 256, 8, 65)
    assert (c.norm, c.position, c.mlp, c.bias, c.tie_weights) == (
        "rmsnorm", "rope", "swiglu", False, False)
    assert c.ffn_width == 1024  # Meta's default: 8/3 x 384 = 1024, a multiple of 32
    m = SIZES["llama-135m"]
    c = m.config
    assert (c.n_layer, c.n_embd, c.n_head, c.kv_heads, c.ffn_width, c.vocab_size,
            c.tie_weights) == (30, 576, 9, 3, 1536, 49152, True)
    # HuggingFaceTB/SmolLM-135M's 134,515,008 parameters (tied: wte counted once)
    assert sum(int(np.prod(v)) for v in param_shapes(c).values()) == 134_515_008
    assert matmul_params(c) == 134_515_008  # tied: the head's V*C is wte's, counted once
    assert (m.batch_size, m.seq_len) == (4, 64)
    cuda = m.for_device("cuda")
    assert (cuda.seq_len, cuda.config.block_size, cuda.config.vocab_size) == (1024, 1024, 49152)
    assert cuda.config.vocab_size % 128 == 0
    assert SIZES["llama-6L-384"].for_device("cuda") == SIZES["llama-6L-384"]
    assert not {"llama-6L-384", "llama-135m", "llama-tiny"} & set(DEFAULT_SIZES)
    assert s.shape()["n_kv_head"] == 2 and s.shape()["arch"] == "llama"


# ---------------------------------------------------------------------- KV cache memory


def test_kv_cache_bytes_per_token_known_answers():
    """2 x n_layer x n_kv_head x head size x bytes (flops.py docstring)."""
    c = SIZES["llama-6L-384"].config
    assert kv_cache_bytes_per_token(c, 4) == 2 * 6 * 2 * 64 * 4 == 6144
    assert kv_cache_bytes_per_token(c.replace(n_kv_head=None), 4) == 18432
    c = SIZES["llama-135m"].config
    assert kv_cache_bytes_per_token(c, 4) == 2 * 30 * 3 * 64 * 4 == 46080
    assert kv_cache_bytes_per_token(c, 2) == 23040
    assert kv_cache_bytes_per_token(SIZES["6L-384"].config, 4) == 2 * 6 * 384 * 4


def _numpy_cache_bytes(config, prompt):
    model = GPT(config, dtype="float32", seed=0)
    cache = Decoder(model, prompt).cache  # prefilled by the real decoding path
    arrays = cache.k + cache.v
    return arrays, sum(a.nbytes for a in arrays)


def _torch_cache_bytes(config, prompt, autocast_dtype=None):
    params = init_params(config, np.dtype("float32"), np.random.default_rng(0))
    model = torch_gpt.GPT.from_params(config, params, attn="sdpa", dtype="float32").eval()
    cache = TorchDecoder(model, prompt, autocast_dtype=autocast_dtype).cache
    tensors = cache.k + cache.v
    return tensors, sum(t.numel() * t.element_size() for t in tensors)


@pytest.mark.parametrize("n_kv_head", [1, 2, 4])
def test_both_twins_kv_caches_hold_n_kv_head_heads(n_kv_head):
    """KV cache memory is measured, not assumed: after a prefill, each twin's cache arrays are
    (1, n_kv_head, block_size, hs), and their bytes are block_size x the per-token count, so
    the memory is proportional to n_kv_head (4 = n_head: plain multi-head)."""
    config = get_size("llama-tiny").config.replace(n_kv_head=n_kv_head)
    prompt = [1, 2, 3, 4, 5]
    want = config.block_size * kv_cache_bytes_per_token(config, 4)
    arrays, nbytes = _numpy_cache_bytes(config, prompt)
    assert {a.shape for a in arrays} == {(1, n_kv_head, config.block_size, config.head_size)}
    assert {a.dtype for a in arrays} == {np.dtype("float32")}
    assert nbytes == want
    tensors, tbytes = _torch_cache_bytes(config, prompt)
    assert {tuple(t.shape) for t in tensors} == {(1, n_kv_head, config.block_size,
                                                  config.head_size)}
    assert tbytes == want


def test_kv_cache_memory_is_proportional_to_n_kv_head_and_halves_in_bf16():
    base = get_size("llama-tiny").config  # 4 query heads
    prompt = [3, 1, 4, 1, 5, 9]
    mha = _numpy_cache_bytes(base.replace(n_kv_head=4), prompt)[1]
    for kv in (1, 2):
        assert _numpy_cache_bytes(base.replace(n_kv_head=kv), prompt)[1] / mha == kv / 4
        assert (_torch_cache_bytes(base.replace(n_kv_head=kv), prompt)[1]
                / _torch_cache_bytes(base.replace(n_kv_head=4), prompt)[1]) == kv / 4
    # bf16 autocast (the CUDA bf16 rows' cache dtype; CPU autocast stores the same dtype)
    tensors, nbytes = _torch_cache_bytes(base, prompt, autocast_dtype="bfloat16")
    assert {t.dtype for t in tensors} == {torch.bfloat16}
    assert nbytes == base.block_size * kv_cache_bytes_per_token(base, 2)


def test_kv_cache_table_only_at_grouped_sizes_and_per_cache_dtype():
    def row(backend, size, status="ok"):
        s = get_size(size)
        return {"backend": backend, "size": size, "status": status, **s.shape()}

    rows = [row("numpy-f32", "llama-6L-384"), row("torch-cpu", "llama-6L-384"),
            row("torch-cuda-bf16", "llama-135m"), row("cupy-f32", "llama-135m", "skipped"),
            row("numpy-f32", "6L-384")]
    table = {(e["size"], e["dtype"]): e for e in report.kv_cache_table(rows)}
    assert set(table) == {("llama-6L-384", "float32"), ("llama-135m", "bfloat16")}
    e = table["llama-6L-384", "float32"]
    assert (e["bytes_per_token"], e["bytes_per_token_mha"], e["ratio"]) == (6144, 18432, 1 / 3)
    assert e["backends"] == ["numpy-f32", "torch-cpu"]
    assert table["llama-135m", "bfloat16"]["bytes_per_token"] == 23040
    text = report.format_kv_cache(report.kv_cache_table(rows))
    assert "llama-6L-384" in text and "0.333" in text
    assert report.format_kv_cache([]) == ""


def test_llama_6l_384_train_ratio_is_a_target():
    def row(backend, ms):
        return {"backend": backend, "size": "llama-6L-384", "workload": "train",
                "status": "ok", "ms_median": ms, "ms_min": ms, "peak_mem_mb": 1.0}

    ts = [t for t in report.targets([row("numpy-f32", 90.0), row("torch-cpu", 100.0)])
          if t["size"] == "llama-6L-384" and t["target"].startswith("numpy-f32 train step")]
    assert len(ts) == 1 and ts[0]["met"] and ts[0]["value"] == pytest.approx(0.9)


# ---------------------------------------------------------------------- bench.profile


def test_numpy_profile_counts_the_llama_layers_as_their_own_kinds():
    p = profile_train_step("llama-tiny", steps=1, warmup=1)
    by = {r["kind"]: r for r in p["rows"]}
    assert list(by) == [*KINDS, "other"]
    for kind in (*LLAMA_KINDS, "attention"):  # GQA runs attention_forward/backward
        assert by[kind]["forward_ms"] > 0 and by[kind]["backward_ms"] > 0, kind
    assert by["gelu"]["total_ms"] == 0 and by["layernorm"]["total_ms"] == 0
    assert sum(r["pct"] for r in p["rows"]) == pytest.approx(100.0)
    kinds = {f["function"]: f["kind"] for f in p["functions"]}
    assert kinds["rope.py:rope_backward"] == "rope"
    assert kinds["swiglu.py:swiglu_recompute"] == "swiglu"


def test_a_counted_call_inside_another_is_counted_once(tmp_path):
    """A *_recompute that calls its *_forward (swiglu_recompute did until it kept the sigmoid
    for the backward): the nested time is the recompute's (backward) only. A layer file of
    that shape, at a numpy_gpt-like path, profiled for real."""
    import importlib.util

    path = tmp_path / "numpy_gpt" / "nn" / "layers" / "swiglu.py"
    path.parent.mkdir(parents=True)
    path.write_text("import numpy as np\n"
                    "def swiglu_forward(g):\n    return np.tanh(g) * g\n"
                    "def swiglu_recompute(g):\n    return swiglu_forward(g)\n")
    spec = importlib.util.spec_from_file_location("_nested_layer", path)
    layer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layer)
    g = np.random.default_rng(0).standard_normal(2**18)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(20):
        layer.swiglu_recompute(g)
    prof.disable()
    rows, functions = breakdown(prof, steps=1, step_ms=1e3)
    by = {r["kind"]: r for r in rows}
    assert by["swiglu"]["forward_ms"] == 0 and by["swiglu"]["backward_ms"] > 0
    nested = [f for f in functions if f["function"] == "swiglu.py:swiglu_forward"]
    assert nested and nested[0]["ms_per_step"] == pytest.approx(0.0, abs=1e-9)
    assert nested[0]["calls_per_step"] == 20


def test_torch_profile_counts_the_llama_layers_as_their_own_kinds():
    """--vs-torch at llama-tiny: nn.RMSNorm, apply_rope's unnamed ops (by their Python frame)
    and SwiGLU's silu and product, forward and backward (backward by sequence number)."""
    from bench.torch_profile import (
        classify_frame,
        classify_op,
        format_side_by_side,
        profile_torch_train_step,
    )

    names = {"aten::rms_norm": "rmsnorm", "aten::_fused_rms_norm_backward": "rmsnorm",
             "aten::silu_backward": "swiglu", "aten::add": "residual/glue"}
    assert {n: classify_op(n) for n in names} == names
    frames = {"/w/torch_gpt/layers.py(80): apply_rope": "rope",
              "/w/torch_gpt/model.py(145): hidden": "swiglu",
              "/w/numpy_gpt/x.py(1): apply_rope": "other"}
    assert {f: classify_frame(f) for f in frames} == frames
    t = profile_torch_train_step("llama-tiny", steps=2, warmup=1, kinds=KINDS)
    assert [r["kind"] for r in t["rows"]] == [*KINDS, "other"]
    by = {r["kind"]: r for r in t["rows"]}
    for kind in (*LLAMA_KINDS, "attention", "linear/matmul"):
        assert by[kind]["forward_ms"] > 0 and by[kind]["backward_ms"] > 0, kind
    assert by["gelu"]["total_ms"] == 0 and by["layernorm"]["total_ms"] == 0
    assert sum(r["pct"] for r in t["rows"]) == pytest.approx(100.0)
    table = format_side_by_side(profile_train_step("llama-tiny", steps=1, warmup=1), t)
    assert all(k in table for k in LLAMA_KINDS)


# ---------------------------------------------------------------------- the --quick run


def test_quick_run_at_llama_tiny_has_every_workload_and_the_kv_table(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--sizes", "llama-tiny",
                           "--backends", "numpy-f32", "torch-cpu", "--json", str(out)],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads(out.read_text())
    rows = {(r["backend"], r["workload"]): r for r in data["rows"]}
    assert len(rows) == 2 * 7 and all(r["status"] == "ok" for r in rows.values())
    assert all(r["check"]["ok"] and r["n_kv_head"] == 2 for r in rows.values())
    gen = rows["numpy-f32", "generate"]
    assert gen["bytes_per_token"] > 0 and gen["working_set_bytes"] > 0
    (kv,) = data["kv_cache"]
    assert (kv["size"], kv["dtype"], kv["n_kv_head"], kv["ratio"]) == (
        "llama-tiny", "float32", 2, 0.5)
    assert "KV cache per generated token" in proc.stdout
