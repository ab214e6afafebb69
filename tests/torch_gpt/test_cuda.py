"""The torch twin and numpy_gpt-on-CuPy end to end on a real GPU (skipped without one).

Run by bench/gpu_check.sh's pytest step (`pytest -m cuda`); CI has no GPU, so every test here
skips there with its reason. Each checks a path that parity's tensor cases do not: the
training command on CUDA with bf16 autocast, its checkpoint read back by the NumPy twin,
batched KV-cache decoding on the GPU, and numpy_gpt's own AdamW steps on CuPy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import torch_gpt
from numpy_gpt import GPT, GPTConfig
from numpy_gpt.generation.batch_generate import generate_batch as np_generate_batch
from numpy_gpt.nn.checkpoint import load_checkpoint
from torch_gpt.batch_generate import generate_batch as t_generate_batch

ROOT = Path(__file__).resolve().parents[2]
HAS_CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")]
CFG = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)


def _cupy_or_skip():
    from numpy_gpt.nn.device import DeviceError, array_module

    try:
        return array_module("cuda")
    except DeviceError as e:
        pytest.skip(str(e))


def test_train_command_on_cuda_bf16_and_the_numpy_twin_reads_its_checkpoint(
        citizens_chars: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch_gpt", "train", "--dataset", str(citizens_chars),
           "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "32",
           "--batch-size", "8", "--max-iters", "60", "--eval-interval", "30", "--eval-iters", "2",
           "--learning-rate", "3e-3", "--sample-tokens", "0", "--no-plot", "--device", "cuda",
           "--dtype", "bfloat16", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [0, 30, 60]
    assert log[-1]["val_loss"] < log[0]["val_loss"] - 0.3  # it learned, in bf16 on the GPU
    # the checkpoint (float32 master weights) means the same model in both twins
    config, params = load_checkpoint(out / "last")[:2]
    ref = GPT(config, dtype="float64")
    for k, v in params.items():
        ref.params[k][...] = v
    gpu = torch_gpt.GPT.load(out / "last", device="cuda").eval()
    idx = np.random.default_rng(0).integers(0, config.vocab_size, (2, 32))
    expected = ref.forward(idx)[0]
    with torch.no_grad():
        got = gpu(torch.as_tensor(idx, device="cuda"))[0].double().cpu().numpy()
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_batched_kv_cache_decoding_on_cuda_matches_numpy() -> None:
    ref = GPT(CFG, dtype="float64", seed=4)
    for v in ref.params.values():
        v *= 4.0  # peaked logits: greedy ties cannot flip on rounding
    gpu = torch_gpt.GPT.from_params(CFG, ref.params, device="cuda").eval()
    prompts = [[1, 2, 3], [7], [4, 4, 9, 11, 2]]
    for settings in ({"greedy": True}, {"temperature": 1.2, "top_k": 8, "seed": 3}):
        expected = np_generate_batch(ref, prompts, max_new_tokens=24, **settings)
        assert t_generate_batch(gpu, prompts, max_new_tokens=24, **settings) == expected


def test_numpy_gpt_adamw_steps_on_cupy_equal_the_cpu_in_float64() -> None:
    cupy = _cupy_or_skip()
    from numpy_gpt.nn.device import to_numpy
    from numpy_gpt.nn.optim import AdamW

    idx = np.random.default_rng(1).integers(0, CFG.vocab_size, (3, 16))
    final = {}
    for device in ("cpu", "cuda"):
        model = GPT(CFG, dtype="float64", seed=5, device=device)
        opt = AdamW(model.params, lr=1e-2, weight_decay=0.1)
        for _ in range(5):
            _, _, cache = model.forward(idx[:, :-1], idx[:, 1:])
            opt.step(model.backward(cache))
        final[device] = {k: to_numpy(v) for k, v in model.params.items()}
        if device == "cuda":
            assert all(isinstance(v, cupy.ndarray) for v in model.params.values())
    for k, p in final["cpu"].items():
        np.testing.assert_allclose(final["cuda"][k], p, rtol=1e-10, atol=1e-12, err_msg=k)


def test_fp16_autocast_training_steps_stay_finite_with_the_grad_scaler() -> None:
    from torch_gpt.precision import autocast, grad_scaler

    model = torch_gpt.GPT(CFG, device="cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = grad_scaler("cuda", "float16")
    idx = torch.randint(0, CFG.vocab_size, (4, 16), device="cuda",
                        generator=torch.Generator("cuda").manual_seed(0))
    losses = []
    for _ in range(20):
        with autocast("cuda", "float16"):
            _, loss = model(idx[:, :-1], idx[:, 1:])
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
