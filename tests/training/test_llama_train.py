"""Training Llama-shaped models through the shared loop and the `train` command line (numpy
twin): --arch llama and the single flags, the shape header, resume, --init-from, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_train import final_params, tiny

from numpy_gpt.data.dataset import TokenDataset
from numpy_gpt.nn.checkpoint import read_meta
from numpy_gpt.training.config import TrainConfig
from numpy_gpt.training.numpy_backend import numpy_backend
from numpy_gpt.training.train import train

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--n-layer", "2", "--n-head", "4", "--n-embd", "32", "--block-size", "16",
         "--batch-size", "4", "--eval-iters", "2", "--warmup-iters", "2",
         "--learning-rate", "1e-2", "--min-lr", "1e-3", "--sample-tokens", "0", "--no-plot"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "numpy_gpt", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          check=False)


def log_of(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]


def test_train_arch_llama_cli_learns_resumes_and_samples(citizens_chars, tmp_path):
    out = tmp_path / "llama"
    done = run_cli("train", "--dataset", str(citizens_chars), "--arch", "llama", *SMALL,
                   "--max-iters", "20", "--eval-interval", "10", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ("architecture: llama (rmsnorm, rope halves theta 10000, swiglu F=96, "
            "4 q / 2 kv heads, no bias, untied head)") in done.stdout
    model = read_meta(out / "last")["model"]
    assert (model["norm"], model["position"], model["mlp"], model["n_kv_head"]) == (
        "rmsnorm", "rope", "swiglu", 2)
    names = set(final_params(out))
    assert "transformer.wpe.weight" not in names and "lm_head.weight" in names
    assert "transformer.h.1.mlp.c_gate.weight" in names
    log = log_of(out)
    assert log[-1]["val_loss"] < log[0]["val_loss"] - 0.3
    # resume keeps the architecture; changing it is refused, nothing written
    done = run_cli("train", "--resume", "--out", str(out), "--max-iters", "30", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "architecture: llama" in done.stdout and log_of(out)[-1]["iter"] == 30
    before = (out / "last" / "model.safetensors").read_bytes()
    done = run_cli("train", "--resume", "--out", str(out), "--n-kv-head", "4", cwd=tmp_path)
    assert done.returncode == 1 and "--n-kv-head 4: cannot change on --resume" in done.stderr
    assert (out / "last" / "model.safetensors").read_bytes() == before
    done = run_cli("sample", "--ckpt", str(out / "best"), "--max-new-tokens", "8", "--seed",
                   "1", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr


def test_single_flags_override_the_arch(citizens_chars, tmp_path):
    """GPT-2 with RoPE and 1 K/V head is two flags away; a flag overrides --arch's value (and
    the default preset's bias=False, like any setting it names, overrides the arch's)."""
    out = tmp_path / "rope"
    done = run_cli("train", "--dataset", str(citizens_chars), "--position", "rope",
                   "--rope-layout", "interleaved", "--n-kv-head", "1", *SMALL, "--max-iters",
                   "2", "--eval-interval", "2", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ("architecture: custom (layernorm, rope interleaved theta 10000, gelu tanh F=128, "
            "4 q / 1 kv heads, no bias, tied head)") in done.stdout
    cfg = TrainConfig(arch="llama", n_head=4, n_kv_head=4, mlp="gelu", bias=True)
    model = cfg.model_config(65)
    assert (model.kv_heads, model.mlp, model.bias, model.norm) == (4, "gelu", True, "rmsnorm")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "mistral"], "--arch must be one of gpt2, llama, got 'mistral'"),
        (["--n-head", "4", "--n-kv-head", "3"], "--n-kv-head (3) must divide n_head (4)"),
        (["--n-head", "4", "--n-embd", "12", "--position", "rope"], "even head size"),
        (["--arch", "llama", "--rope-theta", "0"], "--rope-theta must be a number > 0"),
        (["--arch", "llama", "--ffn-hidden", "0"], "--ffn-hidden must be an integer >= 1"),
        (["--norm", "batchnorm"], "--norm must be one of ('layernorm', 'rmsnorm')"),
        (["--rope-layout", "complex"], "--rope-layout must be one of"),
    ],
)
def test_bad_architecture_is_one_line_and_writes_nothing(args, message, tmp_path):
    done = run_cli("train", *args, "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert done.stderr.strip().startswith("error:") and message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_checkpoint_of_an_unknown_norm_is_one_line(citizens_chars, tmp_path):
    out = tmp_path / "run"
    train(tiny(citizens_chars, max_iters=2, eval_interval=2, arch="llama", n_head=2),
          TokenDataset(citizens_chars), out, numpy_backend)
    config = out / "last" / "config.json"
    meta = json.loads(config.read_text())
    meta["model"]["norm"] = "batchnorm"
    config.write_text(json.dumps(meta))
    done = run_cli("sample", "--ckpt", str(out / "last"), "--max-new-tokens", "3", cwd=tmp_path)
    assert done.returncode == 1 and "norm must be one of" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_llama_interrupt_and_resume_is_bit_identical(citizens_chars, tmp_path):
    """The loop's exact resume holds for a Llama-shaped model (dropout, accumulation on)."""
    cfg = tiny(citizens_chars, arch="llama", n_head=4, n_embd=16, lr_decay_iters=20)
    ds = TokenDataset(citizens_chars)
    train(cfg, ds, tmp_path / "a", numpy_backend)
    stopped = train(cfg.replace(max_iters=10), ds, tmp_path / "b", numpy_backend)
    assert stopped.iter == 10
    train(cfg, ds, tmp_path / "b", numpy_backend, resume=True)
    a, b = final_params(tmp_path / "a"), final_params(tmp_path / "b")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_init_from_a_llama_checkpoint_keeps_its_shape(citizens_chars, tmp_path):
    base = tmp_path / "base"
    train(tiny(citizens_chars, max_iters=2, eval_interval=2, arch="llama", n_head=4,
               n_embd=16), TokenDataset(citizens_chars), base, numpy_backend)
    done = run_cli("train", "--dataset", str(citizens_chars), "--init-from", str(base / "last"),
                   "--max-iters", "2", "--eval-interval", "2", "--eval-iters", "1",
                   "--batch-size", "2", "--sample-tokens", "0", "--no-plot", "--out",
                   str(tmp_path / "ft"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "architecture: llama (rmsnorm, rope halves" in done.stdout
    done = run_cli("train", "--dataset", str(citizens_chars), "--init-from", str(base / "last"),
                   "--arch", "gpt2", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert done.returncode == 1 and "--arch gpt2: --init-from" in done.stderr
    assert "arch='llama'" in done.stderr


def test_finetune_lora_on_every_llama_matrix(citizens_chars, tmp_path):
    """LoRA on q/k/v (c_attn), o (c_proj) and the three MLP matrices (c_gate, c_fc, c_proj);
    finetune takes no architecture flag (the checkpoint's shape is the model)."""
    base = tmp_path / "base"
    train(tiny(citizens_chars, max_iters=2, eval_interval=2, arch="llama", n_head=4,
               n_embd=16), TokenDataset(citizens_chars), base, numpy_backend)
    done = run_cli("finetune", "--ckpt", str(base / "last"), "--dataset", str(citizens_chars),
                   "--lora", "--lora-targets", "c_attn,c_proj,c_gate,c_fc", "--max-iters", "2",
                   "--eval-interval", "2", "--eval-iters", "1", "--batch-size", "2",
                   "--no-plot", "--out", str(tmp_path / "ft"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "architecture: llama" in done.stdout
    adapter = json.loads((tmp_path / "ft" / "adapter" / "adapter_config.json").read_text())
    assert adapter["lora"]["targets"] == ["c_attn", "c_proj", "c_gate", "c_fc"]
    done = run_cli("finetune", "--ckpt", str(base / "last"), "--dataset", str(citizens_chars),
                   "--arch", "gpt2", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert done.returncode != 0 and "--arch" in done.stderr

