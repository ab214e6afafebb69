"""`python -m parity --twin`: outside GPTs held against the float64 NumPy reference.

The built-in twins (HF GPT2LMHeadModel, torch_gpt, numpy_gpt) pass; tests/outside_gpt.py, a
GPT in another style (own names, separate q/k/v, (in, out) weights, exact GELU, nanoGPT's
conventions), passes with a name map; each bug planted in it is caught and localised to its
first wrong tensor; bad input is one line and exit status 2.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import outside_gpt
import pytest
import torch
from torch import nn

import torch_gpt
from numpy_gpt.nn.model import GPT as NumpyGPT
from parity import PRESETS
from parity.cli import main
from parity.external import TwinReport, check_twin, format_twin_report
from parity.harness import format_row
from parity.namemap import place
from parity.reference import probe_order, probe_params, reference_trace
from parity.twins import TwinError

ROOT = Path(__file__).resolve().parents[2]
CONFIG, B, T = PRESETS["tiny"]  # V=11, block 4, 2 layers, 2 heads, C=8; B=2, T=3
OUTSIDE = CONFIG.replace(gelu="exact")  # the outside GPT uses the exact GELU

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _failures(report: TwinReport) -> str:
    lines = [format_row(r) for r in report.rows if not r.ok]
    return "\n".join([*lines, *format_twin_report(report)])


def _outside(bug: str | None = None, **kw) -> TwinReport:
    factory = functools.partial(outside_gpt.make_gpt, bug=bug)
    return check_twin(factory, kw.pop("config", OUTSIDE), B, T,
                      name_map=kw.pop("name_map", outside_gpt.NAME_MAP), **kw)


# ---------------------------------------------------------------------- passing twins


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_hf_gpt2_passes_in_float64(tied: bool) -> None:
    pytest.importorskip("transformers", reason="--twin hf needs transformers")
    report = check_twin("hf", CONFIG.replace(tie_weights=tied), B, T)
    assert report.ok, _failures(report)
    assert {r.dtype for r in report.rows if r.category == "grad"} == {"float64"}
    notes = " | ".join(report.notes)
    assert "Conv1D" in notes and ("head: tied" if tied else "head: untied") in notes
    assert "labels=" in notes and "shifted by one" in notes and "float64" in notes
    # every probe hooked, then the logits; every parameter's gradient
    assert sum(r.name.startswith("act:") for r in report.rows) == 12 * CONFIG.n_layer + 4
    assert sum(r.name.startswith("grad:") for r in report.rows) == 28 + (not tied)


def test_builtin_torch_and_numpy_twins_pass() -> None:
    torch_report = check_twin("torch", CONFIG, B, T)
    assert torch_report.ok, _failures(torch_report)
    numpy_report = check_twin("numpy", CONFIG, B, T, dtype="float32")  # f32 vs f64 reference
    assert numpy_report.ok, _failures(numpy_report)
    assert {r.dtype for r in numpy_report.rows} == {"float32"}
    assert any("none captured" in f for f in numpy_report.findings)


def test_outside_gpt_passes_with_a_name_map() -> None:
    report = _outside()
    assert report.ok, _failures(report)
    assert report.first_divergence is None
    notes = " | ".join(report.notes)
    for said in ("your name map", "head: untied", "(in, out)", "ignore index -1",
                 "last-position-only logits", "targets=targets"):
        assert said in notes
    assert any(r.name == "logits (no targets, last position)" and r.shape == (B, 1, 11)
               for r in report.rows)


def test_bias_off_and_untied_head_are_detected_from_the_model() -> None:
    def factory(config):
        return torch_gpt.GPT(config.replace(bias=False, tie_weights=False), init=False)

    report = check_twin(factory, CONFIG, B, T)
    assert report.ok, _failures(report)
    notes = " | ".join(report.notes)
    assert "bias: off" in notes and "head: untied" in notes


def test_gpt2_names_without_the_transformer_prefix() -> None:
    class NoPrefix(nn.Module):  # torch_gpt's modules at the root: wte.weight, h.0.ln_1...
        def __init__(self, config):
            super().__init__()
            for name, child in torch_gpt.GPT(config, init=False).transformer.items():
                self.add_module(name, child)

        def forward(self, idx, targets=None):
            x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
            for block in self.h:
                x = block(x)
            logits = torch.nn.functional.linear(self.ln_f(x), self.wte.weight)
            return logits, None if targets is None else torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), targets.flatten())

    report = check_twin(NoPrefix, CONFIG, B, T)
    assert report.ok, _failures(report)
    assert "names: GPT-2/nanoGPT without 'transformer.'" in report.notes


def test_float32_when_float64_fails() -> None:
    class Float32Only(outside_gpt.OutsideGPT):
        def forward(self, tokens, targets=None):
            if self.head.weight.dtype != torch.float32:
                raise TypeError("this model runs in float32 only")
            return super().forward(tokens, targets)

    def factory(c):
        return Float32Only(c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd)

    report = check_twin(factory, OUTSIDE, B, T, name_map=outside_gpt.NAME_MAP)
    assert report.ok, _failures(report)
    assert {r.dtype for r in report.rows} == {"float32"}
    assert any("float32, float64 failed (TypeError: this model runs in float32 only)" in n
               for n in report.notes)


# ---------------------------------------------------------------------- planted bugs


@pytest.mark.parametrize(("bug", "first", "mismatch"), [
    ("scale_n_embd", "transformer.h.0.attn.c_proj input", "scaled by 1/sqrt(n_embd)"),
    ("mask_leak", "transformer.h.0.attn.c_proj input", None),
    ("ln_eps", "transformer.h.0.ln_1 output", "LayerNorm eps 1e-06 instead of 1e-05"),
    ("no_residual", "transformer.h.0.ln_2 input", None),
    ("no_activation", "transformer.h.0.mlp.c_proj input", "the MLP has no activation"),
    ("pos_slice", "transformer.wpe output", None),
    ("tied_forward", "logits", "the logits use wte although lm_head is its own parameter"),
])
def test_planted_bug_is_caught_and_localised(bug: str, first: str, mismatch: str | None
                                             ) -> None:
    report = _outside(bug)
    assert not report.ok
    assert report.first_divergence == first, _failures(report)
    assert report.findings[0].startswith(f"first divergence: {first}")
    named = [f for f in report.findings if f.startswith("looks like a config mismatch")]
    assert (mismatch in named[0]) if mismatch else not named, report.findings
    # every probe before the first divergence agrees; the ones after are not trusted
    rows = [r.name.removeprefix("act:") for r in report.rows]
    assert all(r.ok for r in report.rows[:rows.index(first)])
    assert any(f.startswith("gradients:") for f in report.findings)


def test_a_backward_bug_is_localised_to_the_gradient_nearest_the_loss() -> None:
    report = _outside("gelu_backward")
    assert report.first_divergence is None  # the forward is right
    assert not report.ok
    assert report.findings[-1].startswith("gradients: 24 of 29 outside tolerance; nearest the "
                                          "loss: transformer.h.1.mlp.c_fc.bias")
    assert report.findings[-1].endswith("the backward itself is wrong there")


def test_float32_rounding_inside_a_float64_model_is_named() -> None:
    def factory(config):
        model = torch_gpt.GPT(config, init=False)
        model.transformer.ln_f.register_forward_hook(lambda m, i, out: out.float().double())
        return model

    report = check_twin(factory, CONFIG, B, T)
    assert report.first_divergence == "transformer.ln_f output"
    assert any(f.startswith("every forward error is at float32 rounding") for f in
               report.findings), report.findings


def test_linear_biases_not_applied_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outside_gpt.Dense, "forward", lambda self, x: x @ self.weight)
    report = _outside()
    assert report.first_divergence == "transformer.h.0.attn.c_attn[q] output"
    assert "the Linear layers' biases are created but not applied" in report.findings[1]


def test_other_gelu_is_named_as_a_config_mismatch() -> None:
    report = _outside(config=CONFIG)  # the suite says tanh, the model uses the exact GELU
    assert report.first_divergence == "transformer.h.0.mlp.c_proj input"
    assert any("GELU 'exact' instead of 'tanh'" in f for f in report.findings)


def test_a_parameter_the_loss_never_reaches_fails_its_gradient_row() -> None:
    report = _outside("tied_forward")
    row = next(r for r in report.rows if r.name == "grad:lm_head.weight")
    assert not row.ok and "no gradient" in row.note
    assert "nearest the loss: lm_head.weight" in report.findings[-1]


# ---------------------------------------------------------------------- names and refusals


def test_name_map_forms_and_refusals(tmp_path: Path) -> None:
    model = outside_gpt.make_gpt(OUTSIDE)
    path = tmp_path / "map.json"
    path.write_text(json.dumps(outside_gpt.NAME_MAP))
    for spec in (str(path), json.dumps(outside_gpt.NAME_MAP), outside_gpt.NAME_MAP["names"]):
        placement = place(model, OUTSIDE, spec)
        qkv = next(s for s in placement.slots
                   if s.canonical == "transformer.h.1.attn.c_attn.weight")
        assert qkv.targets == tuple(f"layers.1.attn.{x}.weight" for x in
                                    ("query", "key", "value")) and qkv.transposed
        assert placement.modules["transformer.h.1.attn"] == "layers.1.attn"
    with pytest.raises(TwinError, match=r"^no model parameter for reference tensor\(s\) "
                                        r"transformer\.wte\.weight.*pass --name-map$"):
        place(model, OUTSIDE, None)
    with pytest.raises(TwinError, match="not reference name"):
        place(model, OUTSIDE, {"transformer.h.{i}.attention": "x"})
    with pytest.raises(TwinError, match="unknown key"):
        place(model, OUTSIDE, {"names": {}, "layout": "in_out"})
    model.extra = nn.Linear(2, 2)
    with pytest.raises(TwinError, match=r"cannot place model parameter\(s\) extra\.weight, "
                                        r"extra\.bias"):
        place(model, OUTSIDE, outside_gpt.NAME_MAP)


def test_reference_trace_is_numpy_gpts_forward() -> None:
    params = probe_params(CONFIG, np.random.default_rng(0))
    idx = np.random.default_rng(1).integers(0, CONFIG.vocab_size, (B, T))
    trace = reference_trace(params, CONFIG, idx)
    logits, _, _ = NumpyGPT.from_params(CONFIG, params, "float64").forward(idx)
    np.testing.assert_array_equal(trace["logits"], logits)
    assert list(trace) == [p for p in probe_order(CONFIG.n_layer) if p in trace]


# ---------------------------------------------------------------------- command line


def test_cli_twin_report_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    name_map = tmp_path / "map.json"
    name_map.write_text(json.dumps(outside_gpt.NAME_MAP))
    factory = tmp_path / "buggy.py"
    factory.write_text("from outside_gpt import make_gpt\n\n"
                       "def make(config):\n    return make_gpt(config, bug='mask_leak')\n")
    out = tmp_path / "rows.json"
    config = json.dumps(OUTSIDE.to_dict() | {"batch_size": B, "seq_len": T})
    code = main(["--twin", f"{factory}:make", "--name-map", str(name_map), "--config", config,
                 "--json", str(out), "--failures-only"])
    text = capsys.readouterr().out
    assert code == 1
    assert "first divergence: transformer.h.0.attn.c_proj input (attention" in text
    data = json.loads(out.read_text())
    assert data["env"]["twin"]["findings"][0].startswith("first divergence")
    for row in data["rows"]:
        assert {"case", "name", "dtype", "device", "max_abs", "error", "tol", "ok"} <= set(row)
    assert main(["--twin", "tests/outside_gpt.py:make_gpt", "--name-map", str(name_map),
                 "--config", config]) == 0


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("spec", "message"), [
    ("missing.py:make", "file missing.py does not exist"),
    ("tests/outside_gpt.py:nope", "tests/outside_gpt.py has no 'nope'"),
    ("RAISES", "the factory raised RuntimeError: out of ideas"),
    ("SHAPES", "the model's transformer.wte.weight has shape (11, 16), the reference needs "
               "(11, 8)"),
])
def test_cli_bad_twin_is_one_line_exit_2(spec: str, message: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    if spec == "RAISES":
        spec = _write(tmp_path / "f.py", "def make(config):\n"
                      "    raise RuntimeError('out of ideas')\n") + ":make"
    elif spec == "SHAPES":
        spec = _write(tmp_path / "g.py", "import torch_gpt\n\ndef make(config):\n"
                      "    return torch_gpt.GPT(config.replace(n_embd=16))\n") + ":make"
    with pytest.raises(SystemExit) as e:
        main(["--twin", spec])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_hf_twin_without_transformers_says_why(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers fails
    with pytest.raises(SystemExit) as e:
        main(["--twin", "hf"])
    assert e.value.code == 2
    assert "--twin hf needs the optional package transformers" in capsys.readouterr().err


def test_cli_bad_twin_has_no_traceback_in_a_real_process(tmp_path: Path) -> None:
    spec = _write(tmp_path / "f.py", "def make(config):\n    return 1 / 0\n") + ":make"
    proc = subprocess.run([sys.executable, "-m", "parity", "--twin", spec], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("the factory raised ZeroDivisionError: division by zero")


def test_lecture_gpt_per_head_projections_absent_and_extra_biases() -> None:
    """Karpathy's lecture model: per-head q/k/v ("{h}"), no q/k/v bias (null), a bias on
    lm_head (zero), logits flattened to (B*T, V). With the exact GELU it passes; as written
    in the lecture (ReLU) the report names the mismatch at the MLP's activation."""
    def exact(config):
        return outside_gpt.GPTLanguageModel(config, act=nn.GELU())

    report = check_twin(exact, OUTSIDE, B, T, name_map=outside_gpt.LECTURE_MAP)
    assert report.ok, _failures(report)
    notes = " | ".join(report.notes)
    assert "held at zero: transformer.h.0.attn.c_attn.bias" in notes
    assert "not in the reference, held at zero: lm_head.bias" in notes
    assert not any(r.name == "grad:transformer.h.0.attn.c_attn.bias" for r in report.rows)
    relu = check_twin(outside_gpt.GPTLanguageModel, OUTSIDE, B, T,
                      name_map=outside_gpt.LECTURE_MAP)
    assert relu.first_divergence == "transformer.h.0.mlp.c_proj input"
    assert "the MLP uses ReLU instead of GELU" in relu.findings[1]
