"""`python -m numpy_gpt compare` (numpy_gpt/training/compare.py, compare_report.py,
machine_load.py): equal parameter counts, every variant in the table, the equal-steps column
at a step every run reached, determinism for a seed, the load records, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from numpy_gpt.cli.main import main
from numpy_gpt.data.dataset import TokenDataset
from numpy_gpt.training.compare import (
    VARIANTS,
    CompareSettings,
    compare,
    param_count,
    plan_variants,
    val_windows,
)
from numpy_gpt.training.compare_report import markdown, summarize, within_spread
from numpy_gpt.training.config import TrainConfig, resolve
from numpy_gpt.training.machine_load import LoadMeter, cpu_model, machine_busy_seconds
from numpy_gpt.training.numpy_backend import numpy_backend

# a 1-layer model on the conftest's citizens text; 6 steps is the whole run (--max-steps)
SMALL = ["--n-layer", "1", "--n-head", "4", "--n-embd", "16", "--block-size", "16",
         "--batch-size", "4", "--warmup-iters", "2", "--learning-rate", "1e-2",
         "--min-lr", "1e-3"]


def small_base(data: Path) -> TrainConfig:
    return TrainConfig(dataset=str(data), n_layer=1, n_head=4, n_embd=16, block_size=16,
                       batch_size=4, warmup_iters=2, learning_rate=1e-2, min_lr=1e-3,
                       lr_decay_iters=20, bias=False)


def test_equal_parameter_counts_at_the_preset_size():
    """4L/4H/128d, V=65, no biases, tied head: GPT-2 has 804,096 parameters (wte 8,320, wpe
    8,192, per layer 2·128 norm + 4·128² attention + 2·128·F MLP with F=512, ln_f 128).
    RoPE drops wpe (8,192 = 4 layers x 2·128·8: F=520); GQA with 2 K/V heads drops 2·64·128
    rows of c_attn per layer (F=512+64=576); SwiGLU's three matrices: F=round(512·2/3)=341
    (512 fewer); Llama: F=384 (GQA's saving, 3·128 per unit) and its untied head (8,320)
    against the missing wpe (8,192): 128 more."""
    base = resolve("shakespeare-char-cpu", None, {})
    plans = plan_variants(base, 65, CompareSettings())
    assert list(plans) == list(VARIANTS)
    widths = {name: t.model_config(65).ffn_width for name, t in plans.items()}
    assert widths == {"gpt2": 512, "rmsnorm": 512, "rope": 520, "swiglu": 341, "gqa": 576,
                      "llama": 384}
    counts = {name: param_count(t, 65) for name, t in plans.items()}
    assert counts["gpt2"] == 804_096
    assert {name: c - counts["gpt2"] for name, c in counts.items()} == {
        "gpt2": 0, "rmsnorm": 0, "rope": 0, "swiglu": -512, "gqa": 0, "llama": 128}
    llama = plans["llama"].model_config(65)
    assert (llama.norm, llama.position, llama.mlp, llama.kv_heads, llama.tie_weights) == (
        "rmsnorm", "rope", "swiglu", 2, False)
    unmatched = plan_variants(base, 65, CompareSettings(equal_params=False))
    assert unmatched["swiglu"].model_config(65).ffn_width == 352  # llama2.c's rule


def test_val_windows_full_split_and_spread():
    tokens = np.arange(100)
    x, y = val_windows(tokens, 16, None)  # (100 - 1) // 16 = 6 whole windows, back to back
    assert x.shape == (6, 16) and x[1, 0] == 16 and y[5, -1] == 96
    assert np.array_equal(y[:, :-1], x[:, 1:])
    x, _ = val_windows(tokens, 16, 3)  # spread from the first to the last possible start
    assert x[:, 0].tolist() == [0, 42, 83]
    with pytest.raises(ValueError, match="fewer than block_size"):
        val_windows(np.arange(10), 16, 3)


def test_runs_are_deterministic_for_a_seed(citizens_chars, tmp_path):
    """Same seed: the same curve to the bit; another seed: another one. A generous time budget
    and --max-steps make the step counts deterministic too."""
    dataset = TokenDataset(citizens_chars)
    settings = CompareSettings(seconds=600, seeds=(1,), variants=("gpt2", "llama"),
                               max_steps=6, eval_every=2, eval_windows=8, full_val=True)
    base = small_base(citizens_chars)
    first = compare(base, dataset, numpy_backend, settings, tmp_path / "a")
    again = compare(base, dataset, numpy_backend, settings, tmp_path / "b")
    for a, b in zip(first, again):
        assert [p["val_loss"] for p in a["curve"]] == [p["val_loss"] for p in b["curve"]]
        assert [p["step"] for p in a["curve"]] == [0, 2, 4, 6]
        assert a["full_val_loss"] == b["full_val_loss"] and a["steps"] == 6
    seed2 = CompareSettings(seconds=600, seeds=(2,), variants=("gpt2",), max_steps=6,
                            eval_every=2, eval_windows=8)
    moved = compare(base, dataset, numpy_backend, seed2, tmp_path / "c")[0]
    assert moved["curve"][-1]["val_loss"] != first[0]["curve"][-1]["val_loss"]
    assert json.loads((tmp_path / "a" / "runs" / "llama-seed1.json").read_text())["steps"] == 6


def test_quick_cli_table_has_every_variant_and_common_steps(citizens_chars, tmp_path, capsys):
    """--quick on a time budget: every variant is a row, the equal-steps column is the
    largest step every run evaluated (<= the fewest steps any run made), the equal-time
    column is each run's last point; the load is recorded per run."""
    out = tmp_path / "cmp"
    code = main(["compare", "--quick", "--dataset", str(citizens_chars), *SMALL,
                 "--seconds", "0.3", "--eval-every", "3", "--eval-windows", "8",
                 "--out", str(out)])
    assert code == 0
    report = json.loads((out / "compare.json").read_text())
    runs, summary = report["runs"], report["summary"]
    assert [(r["seed"], r["variant"]) for r in runs] == [
        (s, v) for s in (1, 2) for v in VARIANTS]  # interleaved: seed 1 of each, then seed 2
    S = summary["equal_steps"]
    assert S == max(set.intersection(*({p["step"] for p in r["curve"]} for r in runs)))
    assert S <= summary["min_steps"] < S + 3 or S == summary["min_steps"]
    for name, row in summary["rows"].items():
        mine = [r for r in runs if r["variant"] == name]
        at_s = [next(p["val_loss"] for p in r["curve"] if p["step"] == S) for r in mine]
        assert row["equal_steps"]["values"] == at_s
        assert row["equal_time"]["values"] == [r["curve"][-1]["val_loss"] for r in mine]
    for r in runs:
        assert r["train_s"] >= 0.3 and r["curve"][-1]["step"] == r["steps"]
        assert set(r["load"]) >= {"loadavg_start", "loadavg_end", "others_share", "own_cores"}
    table = (out / "compare.md").read_text()
    for label in VARIANTS.values():
        assert f"| {label} |" in table
    assert f"val at step {S:,}" in table and "full val" not in table.split("\n")[0]
    assert (out / "compare.png").is_file() and len(list((out / "runs").glob("*.json"))) == 12
    assert "python -m numpy_gpt compare --quick" in report["env"]["command"]
    assert "| GPT-2 |" in capsys.readouterr().out
    # a second comparison in the same folder is refused, nothing removed
    before = (out / "compare.json").read_bytes()
    assert main(["compare", "--quick", "--dataset", str(citizens_chars), *SMALL,
                 "--out", str(out)]) == 1
    assert "already holds a comparison; pass --overwrite" in capsys.readouterr().err
    assert (out / "compare.json").read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["--variants", "gpt2,mamba"], "--variants must be distinct names among gpt2, rmsnorm"),
    (["--seeds", "1,x"], "--seeds must be comma-separated integers"),
    (["--seeds", "1,1"], "--seeds must be distinct"),
    (["--seconds", "0"], "--seconds must be > 0"),
    (["--eval-every", "0"], "--eval-every must be >= 1"),
    (["--n-head", "3", "--n-embd", "9"], "--position='rope' needs an even head size"),
])
def test_bad_input_is_one_line(citizens_chars, tmp_path, capsys, args, message):
    out = tmp_path / "bad"
    code = main(["compare", "--quick", "--dataset", str(citizens_chars), *SMALL, *args,
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not (out / "runs").exists()


def fake_run(variant: str, seed: int, final: float, steps: int) -> dict:
    curve = [{"step": s, "time_s": s / 10, "val_loss": 4.0 - s / 100 - seed / 1000,
              "train_loss": None} for s in range(0, steps + 1, 10)]
    curve.append({"step": steps, "time_s": 9.9, "val_loss": final, "train_loss": None})
    return {"variant": variant, "seed": seed, "params": 100, "ffn_hidden": 8, "arch": "x",
            "steps": steps, "train_s": 9.9, "ms_per_step": 1.0, "val_loss": final,
            "full_val_loss": None, "curve": curve,
            "load": {"others_share": 0.1, "loadavg_start": [1.0, 1.0, 1.0]}}


def test_summary_pairs_seeds_and_marks_the_spread():
    """gpt2 ends at 2.0 and 2.2 (seeds 1, 2); rope at 1.9 and 2.25: paired differences -0.1
    and +0.05, mean -0.025, a range through 0 (≈). swiglu at 1.8, 2.1: -0.2, -0.1, resolved.
    Equal steps: 30, the last multiple of 10 that the shortest run (35 steps) reached."""
    runs = [fake_run("gpt2", 1, 2.0, 41), fake_run("rope", 1, 1.9, 35),
            fake_run("swiglu", 1, 1.8, 50), fake_run("gpt2", 2, 2.2, 44),
            fake_run("rope", 2, 2.25, 38), fake_run("swiglu", 2, 2.1, 52)]
    summary = summarize(runs)
    assert summary["equal_steps"] == 30 and summary["min_steps"] == 35
    rope = summary["rows"]["rope"]
    assert rope["equal_time_delta"]["values"] == pytest.approx([-0.1, 0.05])
    assert within_spread(rope["equal_time_delta"])
    assert not within_spread(summary["rows"]["swiglu"]["equal_time_delta"])
    assert summary["rows"]["gpt2"]["equal_time_delta"] is None
    assert rope["equal_steps"]["values"] == pytest.approx([4.0 - 0.3 - 0.001, 4.0 - 0.3 - 0.002])
    env = {"cpu_model": "CPU", "cores": 2, "numpy": "2", "blas": "OpenBLAS", "command": "c",
           "eval_windows": 8, "eval_tokens": 128, "val_tokens": 1000}
    table = markdown(summary, env, 10)
    assert "-0.0250 [-0.1000, +0.0500] ≈" in table and "-0.1500 [-0.2000, -0.1000] |" in table
    with pytest.raises(ValueError, match="runs missing for rope seed 2"):
        summarize(runs[:4])


def test_machine_load_readings():
    # user nice system idle iowait irq softirq steal: busy = 100+0+50+0+0+0+0+10 ticks
    line = "cpu  100 0 50 9999 7 0 0 10 0 0"
    assert machine_busy_seconds(line) == pytest.approx(160 / os.sysconf("SC_CLK_TCK"))
    assert machine_busy_seconds("garbage x y") is None
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7R13\n") == "AMD EPYC 7R13"
    record = LoadMeter().finish()  # far shorter than a tick: who used the cores is unknown
    assert record["cores"] >= 1 and record["own_cores"] >= 0
    assert record["others_share"] is None and record["others_cores"] is None


def test_machine_load_share_is_bounded(monkeypatch):
    """Over a long enough interval the share is busy - own over wall, clamped to [0, cores]."""
    import numpy_gpt.training.machine_load as ml
    clock, busy, own = iter([0.0, 2.0]), iter([100.0, 103.0]), iter([10.0, 11.0])
    monkeypatch.setattr(ml.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(ml, "machine_busy_seconds", lambda: next(busy))
    monkeypatch.setattr(ml, "own_cpu_seconds", lambda: next(own))
    monkeypatch.setattr(ml, "cores", lambda: 2)
    record = ml.LoadMeter().finish()  # others: (3 - 1) busy seconds over 2 s = 1 core of 2
    assert record["others_cores"] == 1.0 and record["others_share"] == 0.5
    clock, busy, own = iter([0.0, 1.0]), iter([0.0, 9.0]), iter([0.0, 0.0])
    assert ml.LoadMeter().finish()["others_share"] == 1.0  # 9 cores' worth on 2: rounding
