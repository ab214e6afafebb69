"""Parity for Llama-shaped models: `python -m parity --config llama-tiny`, the Llama cases of
the default run, random Llama configs, and `--twin` with Llama models from outside (HF's
LlamaForCausalLM, and a llama2.c-style model in tests/llama2c_gpt.py placed without a name
map), including the named RoPE-layout and norm mismatches.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import llama2c_gpt
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpy_gpt.nn.config import GPTConfig
from numpy_gpt.nn.model import GPT as NumpyGPT
from parity import PRESETS, plan, run
from parity.cases import CASES, llama_config, select
from parity.cases.model import compare_model
from parity.cli import main
from parity.external import TwinReport, check_twin, format_twin_report
from parity.harness import Context, Row, format_row

CONFIG, B, T = PRESETS["llama-tiny"]  # C=16, 4 query / 2 key-value heads, F=24, halves
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _failures(rows: list[Row]) -> str:
    return "\n".join(format_row(r) for r in rows if not r.ok)


def _report(report: TwinReport) -> str:
    return "\n".join([_failures(report.rows), *format_twin_report(report)])


# ---------------------------------------------------------------------- the suite


def test_llama_tiny_preset_is_llama_shaped() -> None:
    assert CONFIG.arch == "llama" and CONFIG.kv_heads == 2 < CONFIG.n_head
    assert (CONFIG.bias, CONFIG.tie_weights, CONFIG.ffn_width) == (False, False, 24)
    small = PRESETS["llama-small"][0]
    assert small.kv_heads == 1 and small.rope_layout == "interleaved"


def test_default_run_has_llama_cases_of_every_family() -> None:
    llama = [c.name for c in CASES if "llama" in c.name or c.name.startswith(
        ("layer/rmsnorm", "layer/rope", "layer/swiglu", "layer/attention-gqa"))]
    families = {name.split("/")[0] for name in llama}
    assert families == {"layer", "model", "train", "generate", "lora"}
    assert any(n.startswith("generate/batched-llama") for n in llama)
    assert any(n.startswith("model/train-dropout-llama") for n in llama)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_case_passes_at_llama_tiny(dtype: str) -> None:
    """`python -m parity --config llama-tiny`: every case (GPT-2's variants too) on a
    Llama-shaped model."""
    rows = run(plan(dtype, "cpu"), CONFIG, B, T)
    assert {r.case for r in rows} == {c.name for c in CASES}
    assert all(r.ok for r in rows), _failures(rows)


def test_llama_cases_under_autocast() -> None:
    rows = run([("bfloat16", "cpu")], *PRESETS["tiny"], cases=select(["model/llama-*"]))
    assert rows and all(r.ok for r in rows), _failures(rows)


def test_a_wrong_rope_layout_in_torch_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch_gpt turning interleaved pairs as halves fails the interleaved cases."""
    import torch_gpt.model as tm

    real = tm.apply_rope
    monkeypatch.setattr(tm, "apply_rope", lambda x, cos, sin, layout: real(x, cos, sin,
                                                                          "halves"))
    rows = run([("float64", "cpu")], CONFIG, B, T,
               cases=select(["model/llama-interleaved-*", "model/llama-untied-nobias-sdpa"]))
    bad = {r.case for r in rows if not r.ok}
    assert bad == {"model/llama-interleaved-manual-smooth-ignore"}, _failures(rows)


@st.composite
def llama_setups(draw: st.DrawFn) -> dict:
    n_head = draw(st.sampled_from([1, 2, 3, 4]))
    n_kv_head = draw(st.sampled_from([d for d in range(1, n_head + 1) if n_head % d == 0]))
    hs = draw(st.sampled_from([2, 4, 6]))
    config = llama_config(GPTConfig(
        vocab_size=draw(st.integers(2, 50)), block_size=draw(st.integers(1, 7)),
        n_layer=draw(st.integers(1, 2)), n_head=n_head, n_embd=n_head * hs)).replace(
        n_kv_head=n_kv_head, rope_layout=draw(st.sampled_from(["halves", "interleaved"])),
        ffn_hidden=draw(st.sampled_from([None, 5, 12])), bias=draw(st.booleans()),
        tie_weights=draw(st.booleans()), rope_theta=draw(st.sampled_from([1e4, 5e5, 7.0])),
        dropout=draw(st.sampled_from([0.0, 0.0, 0.3])))
    if not config.dropout:
        config = config.replace(attention=draw(st.sampled_from(["full", "tiled"])),
                                attention_tile=draw(st.sampled_from([None, 1, 2, 3])))
    return {"config": config, "batch_size": draw(st.integers(1, 3)),
            "seq_len": draw(st.integers(1, config.block_size)),
            "attn": "manual" if config.dropout else draw(st.sampled_from(["sdpa", "manual"])),
            "seed": draw(st.integers(0, 2**16))}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setup=llama_setups())
def test_hypothesis_random_llama_configs_float64(setup: dict) -> None:
    config = setup["config"]
    ctx = Context("float64", "cpu", config, setup["batch_size"], setup["seq_len"],
                  seed=setup["seed"], case="hypothesis-llama")
    compare_model(ctx, config, attn=setup["attn"], targets="ignored",
                  train=config.dropout > 0)
    assert len(ctx.rows) == 2 + len(NumpyGPT(config).params)
    assert all(r.ok for r in ctx.rows), _failures(ctx.rows)


# ---------------------------------------------------------------------- outside Llamas


def test_hf_llama_passes_in_float64_with_gqa_untied() -> None:
    pytest.importorskip("transformers", reason="--twin hf needs transformers")
    report = check_twin("hf", CONFIG, B, T)
    assert report.ok, _report(report)
    notes = " | ".join(report.notes)
    assert "Hugging Face Llama names (recognised" in notes and "head: untied" in notes
    assert "float32 whatever the dtype" in notes and "dtype: float64" in notes
    n_params = len(NumpyGPT(CONFIG).params)
    assert sum(r.name.startswith("grad:") for r in report.rows) == n_params
    assert {r.dtype for r in report.rows if r.category == "grad"} == {"float64"}
    probes = {r.name for r in report.rows if r.name.startswith("act:")}
    assert {"act:transformer.h.0.mlp.c_gate output", "act:transformer.h.1.attn.c_attn[k] output",
            "act:transformer.h.0.attn.c_proj input"} <= probes


def test_stock_hf_llama_agrees_to_float32_rounding_only() -> None:
    """Without parity/hf_llama.py's swap, HF's float32 RMSNorm and RoPE angles show: float64
    fails at 1e-12 and the report says float32 rounding; the float32 check passes."""
    transformers = pytest.importorskip("transformers")
    from parity import hf_llama

    def stock(config):
        model = hf_llama.hf_llama_twin(config, transformers)
        return type(model)(model.config)  # a fresh model: HF's own forwards

    report = check_twin(stock, CONFIG, B, T)
    assert not report.ok
    assert any("float32 rounding" in f for f in report.findings), report.findings
    assert check_twin(stock, CONFIG, B, T, dtype="float32").ok


def test_llama2c_style_model_is_placed_without_a_name_map() -> None:
    config = CONFIG.replace(rope_layout="interleaved", tie_weights=True)
    report = check_twin(llama2c_gpt.make_llama, config, B, T)
    assert report.ok, _report(report)
    notes = " | ".join(report.notes)
    for said in ("Meta / llama2.c Llama names", "head: tied", "model.last_loss",
                 "ignore index -1", "last-position-only logits"):
        assert said in notes, notes
    no_loss = check_twin(functools.partial(llama2c_gpt.make_llama, bug="no_loss"), config, B, T)
    assert no_loss.ok and "returns none and stores none" in " | ".join(no_loss.notes)


@pytest.mark.parametrize(("bug", "named", "first"), [
    ("halves", "RoPE pairs 'halves'", "transformer.h.0.attn.c_proj input"),
    ("layernorm", "LayerNorm instead of RMSNorm", "transformer.h.0.ln_1 output"),
])
def test_layout_and_norm_mismatches_are_named(bug: str, named: str, first: str) -> None:
    config = CONFIG.replace(rope_layout="interleaved", tie_weights=True)
    report = check_twin(functools.partial(llama2c_gpt.make_llama, bug=bug), config, B, T)
    assert not report.ok and report.first_divergence == first
    assert any(f.startswith("looks like a config mismatch: " + named) for f in report.findings)


def test_cli_twin_hf_checks_gpt2_and_llama(tmp_path: Path, capsys) -> None:
    pytest.importorskip("transformers")
    out = tmp_path / "rows.json"
    assert main(["--twin", "hf", "--json", str(out), "--failures-only"]) == 0
    text = capsys.readouterr().out
    assert "twin hf:" in text and "twin hf-llama:" in text
    data = json.loads(out.read_text())
    assert {r["case"] for r in data["rows"]} == {"twin/hf", "twin/hf-llama"}
    assert [t["config"]["norm"] for t in data["env"]["twins"]] == ["layernorm", "rmsnorm"]
    # an interleaved Llama against HF's halves: exit 1, the layout named
    assert main(["--twin", "hf", "--config", "llama-small", "--failures-only"]) == 1
    assert "looks like a config mismatch: RoPE pairs 'halves'" in capsys.readouterr().out


def test_reference_trace_of_a_llama_is_numpy_gpts_forward() -> None:
    from parity.reference import probe_params, reference_trace

    for layout in ("halves", "interleaved"):
        config = CONFIG.replace(rope_layout=layout)
        params = probe_params(config, np.random.default_rng(0))
        idx = np.random.default_rng(1).integers(0, config.vocab_size, (B, T))
        logits, _, _ = NumpyGPT.from_params(config, params, "float64").forward(idx)
        trace = reference_trace(params, config, idx)
        np.testing.assert_allclose(trace["logits"], logits, rtol=0, atol=1e-13)
        assert "transformer.wpe output" not in trace
        assert trace["transformer.h.0.attn.c_attn[k] output"].shape == (B, T, 8)  # KV hs


@pytest.mark.parametrize(("fields", "says"), [
    ({"n_head": 4, "n_embd": 16, "n_kv_head": 3}, "n_kv_head (3) must divide n_head (4)"),
    ({"n_head": 2, "n_embd": 6, "position": "rope"}, "needs an even head size"),
    ({"position": "rope", "rope_theta": 0}, "rope_theta must be a number > 0"),
    ({"mlp": "swiglu", "ffn_hidden": 0}, "ffn_hidden must be an integer >= 1"),
    ({"norm": "batchnorm"}, "GPTConfig.norm must be one of"),
])
def test_bad_llama_config_is_one_line_exit_2(fields: dict, says: str, capsys) -> None:
    for extra in ([], ["--twin", "torch"]):
        with pytest.raises(SystemExit) as e:
            main(["--config", json.dumps(fields), *extra])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and says in err, err
