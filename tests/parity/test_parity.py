"""The parity suite under pytest: the same cases as `python -m parity`, a hypothesis sweep of
random configs in float64, the harness itself, and proof that a planted bug is caught.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import fake_cupy
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpy_gpt.nn.config import GPTConfig
from numpy_gpt.nn.model import GPT as NumpyGPT
from parity import PRESETS, compare, plan, run
from parity.cases import CASES, select
from parity.cases import layers as layer_cases
from parity.cases.model import VARIANTS as model_variants
from parity.cases.model import compare_model
from parity.cli import main
from parity.harness import Context, Row, format_row, print_report, summarize
from parity.tolerances import TOLERANCES, tolerance

ROOT = Path(__file__).resolve().parents[2]
HAS_CUDA = torch.cuda.is_available()
FAULT = "transformer.h.0.mlp.c_fc.weight"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _failures(rows: list[Row]) -> str:
    return "\n".join(format_row(r) for r in rows if not r.ok)


# ---------------------------------------------------------------------- the suite itself


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_parity_suite_passes_on_cpu(dtype: str) -> None:
    rows = run(plan(dtype, "cpu"), *PRESETS["tiny"])
    assert {r.case for r in rows} == {c.name for c in CASES}  # every case ran
    assert all(r.ok for r in rows), _failures(rows)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_autocast_model_cases_pass_on_cpu(dtype: str) -> None:
    rows = run([(dtype, "cpu")], *PRESETS["tiny"], cases=select(["model/tied-bias-tanh-*"]))
    assert rows and all(r.ok for r in rows), _failures(rows)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_parity_suite_passes_on_cuda() -> None:
    rows = run(plan(None, "cuda"), *PRESETS["tiny"])
    assert {r.device for r in rows} == {"cuda"}
    assert all(r.ok for r in rows), _failures(rows)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cupy_cases_pass_with_numpy_gpt_on_the_fake_device(dtype: str) -> None:
    """The cases marked cupy=True with numpy_gpt on device "cuda" (tests/fake_cupy.py; torch
    stays on the CPU here): their code moves every array it must, and they pass. On a GPU
    the runner adds these runs itself, named "cupy:<case>"."""
    cupy_cases = [c for c in CASES if c.cupy]
    # "layer": only the tiled attention kernel, whose loops over tiles must stay on the device
    assert {c.name.split("/")[0] for c in cupy_cases} == {"model", "train", "generate", "layer"}
    with fake_cupy.installed():
        for case in cupy_cases:
            ctx = Context(dtype, "cpu", *PRESETS["tiny"], case=case.name, numpy_device="cuda")
            case.run(ctx)
            assert ctx.rows and all(r.ok for r in ctx.rows), _failures(ctx.rows)


@st.composite
def model_setups(draw: st.DrawFn) -> dict:
    n_head = draw(st.integers(1, 4))
    # n_embd >= 2: with C = 1 LayerNorm's output is identically 0, so ln_f.weight's true
    # gradient is exactly 0 and the relative error max|a-b|/1e-30 amplifies 1e-19 noise.
    head_size = draw(st.integers(2 if n_head == 1 else 1, 4))
    config = GPTConfig(
        vocab_size=draw(st.integers(2, 300)),
        block_size=draw(st.integers(1, 8)),
        n_layer=draw(st.integers(1, 3)),
        n_head=n_head,
        n_embd=n_head * head_size,
        bias=draw(st.booleans()),
        tie_weights=draw(st.booleans()),
        gelu=draw(st.sampled_from(["tanh", "exact"])),
        dropout=draw(st.sampled_from([0.0, 0.0, 0.3])),
    )
    if not config.dropout:  # numpy_gpt's tiled attention kernel, any tile size (no dropout)
        config = config.replace(attention=draw(st.sampled_from(["auto", "full", "tiled"])),
                                attention_tile=draw(st.sampled_from([None, 1, 2, 3, 5, 16])))
    return {
        "config": config,
        "batch_size": draw(st.integers(1, 4)),
        "seq_len": draw(st.integers(1, config.block_size)),
        "label_smoothing": draw(st.sampled_from([0.0, 0.1])),
        "targets": draw(st.sampled_from(["all", "ignored"])),
        # injected attention-dropout masks need the written-out attention
        "attn": "manual" if config.dropout else draw(st.sampled_from(["sdpa", "manual"])),
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setup=model_setups())
def test_hypothesis_random_configs_float64(setup: dict) -> None:
    config = setup["config"]
    ctx = Context("float64", "cpu", config, setup["batch_size"], setup["seq_len"],
                  seed=setup["seed"], case="hypothesis")
    compare_model(ctx, config, attn=setup["attn"], label_smoothing=setup["label_smoothing"],
                  targets=setup["targets"], train=config.dropout > 0)
    n_params = len(NumpyGPT(config).params)
    assert len(ctx.rows) == 2 + n_params  # logits, loss, one row per gradient
    assert all(r.ok for r in ctx.rows), _failures(ctx.rows)


# ---------------------------------------------------------------------- harness


def test_compare_error_is_normalized_by_the_reference() -> None:
    b = np.array([[1.0, -4.0], [2.0, 0.0]])
    a = b + np.array([[0.0, 0.0], [0.0, 2e-4]])
    row = compare("c", "x", a, b, "float32", "cpu", 1e-4)
    assert row.max_abs == pytest.approx(2e-4) and row.error == pytest.approx(5e-5)
    assert row.ok and row.shape == (2, 2)
    assert not compare("c", "x", a, b, "float32", "cpu", 1e-5).ok
    zero = compare("c", "z", np.full(3, 1e-31), np.zeros(3), "float64", "cpu", 1e-12)
    assert zero.error == pytest.approx(0.1)  # max|b| = 0 -> divided by 1e-30
    assert compare("c", "z", np.zeros(3), np.zeros(3), "float64", "cpu", 0.0).ok
    nan = compare("c", "n", np.array([np.nan]), np.array([1.0]), "float64", "cpu", 1.0)
    assert not nan.ok and math.isnan(nan.error)
    bad = compare("c", "s", np.zeros(3), np.zeros(4), "float64", "cpu", 1.0)
    assert not bad.ok and "shape" in bad.note
    assert compare("c", "t", torch.tensor(2.0), 2.0, "float64", "cpu", 0.0).ok


def test_tolerance_table_is_the_design_table() -> None:
    for device in ("cpu", "cuda"):
        assert tuple(TOLERANCES["float64", device]) == (1e-12, 1e-10, 1e-10, 1e-12)
        assert tuple(TOLERANCES["float32", device]) == (1e-5, 1e-4, 1e-4, 1e-5)
    assert tolerance("float32", "cuda:0", "grad") == 1e-4
    for dt in ("bfloat16", "float16"):
        assert tolerance(dt, "cuda", "forward") > tolerance("float32", "cuda", "forward")
    with pytest.raises(KeyError):
        tolerance("int8", "cpu", "grad")


def test_report_and_summary(capsys: pytest.CaptureFixture) -> None:
    rows = [compare("a", "x", [1.0], [1.0], "float64", "cpu", 1e-12),
            compare("a", "y", [1.1], [1.0], "float64", "cpu", 1e-12, category="grad"),
            compare("b", "z", [1.0 + 1e-13], [1.0], "float64", "cpu", 1e-12, category="grad")]
    summary = {s["category"]: s for s in summarize(rows)}
    assert summary["grad"]["failed"] == 1 and summary["grad"]["worst"] == "a y"
    assert summary["forward"]["failed"] == 0
    print_report(rows)
    out = capsys.readouterr().out
    assert out.count("\nFAIL ") + out.startswith("FAIL") >= 2  # the row and its category
    assert "FAIL: 3 tensors compared, 1 failed" in out


def test_plan_defaults() -> None:
    cpu = [("float64", "cpu"), ("float32", "cpu")]
    assert plan(None, "cpu") == cpu
    assert plan(None, None)[:2] == cpu
    assert plan("all", "cpu") == [(d, "cpu") for d in ("float64", "float32", "bfloat16",
                                                       "float16")]
    if not HAS_CUDA:
        assert plan(None, "all") == cpu
        with pytest.raises(ValueError, match="CUDA"):
            plan(None, "cuda")


# ---------------------------------------------------------------------- it fails when it should


def test_injected_fault_flags_exactly_that_gradient(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    code = main(["--dtype", "float64", "--device", "cpu", "--case", "model/*",
                 "--inject-fault", FAULT, "--json", str(out), "--failures-only"])
    assert code == 1
    report = json.loads(out.read_text())
    failed = [r for r in report["rows"] if not r["ok"]]
    planted = [r for r in report["rows"] if r["name"] == f"grad:{FAULT}"]
    no_targets = sum(v.targets == "none" for v in model_variants)  # no loss, no gradients
    assert failed == planted and len(planted) >= len(select(["model/*"])) - no_targets
    assert all(r["error"] == pytest.approx(1e-3, rel=1e-6) for r in failed)
    assert {"case", "name", "dtype", "device", "max_abs", "error", "tol", "ok"} <= set(
        report["rows"][0])
    assert report["env"]["torch"] == torch.__version__


def test_a_wrong_numpy_gradient_is_flagged_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    backward = NumpyGPT.backward

    def planted(self, cache, dloss=1.0):
        grads = backward(self, cache, dloss)
        grads["transformer.ln_f.bias"] = grads["transformer.ln_f.bias"] * 1.001
        return grads

    monkeypatch.setattr(NumpyGPT, "backward", planted)
    for dtype in ("float64", "float32"):
        rows = run([(dtype, "cpu")], *PRESETS["tiny"], cases=select(["model/tied-bias-*"]))
        failed = [r for r in rows if not r.ok]
        assert [r.name for r in failed] == ["grad:transformer.ln_f.bias"] * len(failed)
        assert len(failed) == len({r.case for r in rows}), _failures(rows)


def test_the_other_gelu_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(layer_cases.TORCH_GELU, "tanh", layer_cases.TORCH_GELU["exact"])
    rows = run([("float32", "cpu")], *PRESETS["tiny"], cases=select(["layer/*"]))
    failed = {(r.case, r.name.split()[-1]) for r in rows if not r.ok}
    assert failed == {("layer/gelu_tanh", "out"), ("layer/gelu_tanh", "dx")}
    assert all(r.ok for r in rows if r.case != "layer/gelu_tanh")


def test_an_exception_in_a_case_is_a_failed_row(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("planted")

    monkeypatch.setattr(layer_cases.L, "linear_backward", boom)
    rows = run([("float64", "cpu")], *PRESETS["tiny"], cases=select(["layer/linear*"]))
    assert [r.name for r in rows if not r.ok] == ["<exception>", "<exception>"]
    assert "planted" in rows[0].note


# ---------------------------------------------------------------------- command line


def test_bad_flags_give_one_line_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    for argv in (["--dtype", "float8"], ["--config", '{"n_embd": 7, "n_head": 2}'],
                 ["--config", "nope"], ["--case", "nothing/*"], ["--seed", "x"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error" in err, (argv, err)
    if not HAS_CUDA:
        with pytest.raises(SystemExit):
            main(["--device", "cuda"])
        assert "CUDA" in capsys.readouterr().err


def test_list_and_json_config(capsys: pytest.CaptureFixture) -> None:
    assert main(["--list"]) == 0
    assert "model/tied-bias-tanh-sdpa" in capsys.readouterr().out
    cfg = '{"vocab_size": 7, "block_size": 3, "n_layer": 1, "n_head": 1, "n_embd": 4}'
    assert main(["--config", cfg, "--dtype", "float64", "--case", "model/tied-bias-tanh-sdpa",
                 "--failures-only"]) == 0
    assert "OK: 18 tensors compared, 0 failed" in capsys.readouterr().out


def test_python_m_parity_runs_and_exits_0() -> None:
    # the whole suite runs in-process above; this checks the module entry and exit status
    proc = subprocess.run([sys.executable, "-m", "parity", "--failures-only", "--case", "layer/*"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "0 failed" in proc.stdout and "FAIL" not in proc.stdout
    # the time of the check and of the whole command, start-up (importing torch) included:
    # a run of seconds once printed "(0.0 s; ...)", its check alone
    timing = re.search(r"^\((\d+\.\d) s comparing, (\d+\.\d) s in all; config tiny",
                       proc.stdout, re.M)
    assert timing, proc.stdout[-500:]
    assert float(timing[2]) >= float(timing[1]) and float(timing[2]) > 0


def test_python_m_parity_exits_1_on_a_planted_fault() -> None:
    proc = subprocess.run([sys.executable, "-m", "parity", "--dtype", "float32",
                           "--case", "model/tied-bias-tanh-sdpa", "--inject-fault", FAULT],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    fails = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 3 and f"grad:{FAULT}" in fails[0]  # row, its category, verdict
