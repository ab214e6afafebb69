"""numpy_gpt on device "cuda": the same code on CuPy's API, checked here with a fake CuPy.

tests/fake_cupy.py computes with NumPy but refuses, as CuPy does, any operation that mixes a
host array with a device array. So these tests catch a NumPy array created or passed where a
device array belongs, and check that the results equal the CPU run's: bit for bit, except
wte's gradient, which a GPU scatter-adds with xp.add.at (atomic adds) where the CPU sums
sorted runs with reduceat, so repeated ids may round differently in the last bit. Multi-step
comparisons therefore run in float64. A real GPU run is `python -m parity --device cuda`.
"""

import sys

import fake_cupy
import numpy as np
import pytest

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.generation.generate import generate
from numpy_gpt.nn.device import DeviceError, array_module, device_of, get_array_module, to_numpy
from numpy_gpt.nn.lora import LoRAConfig
from numpy_gpt.nn.model_parts import make_dropout_masks
from numpy_gpt.nn.optim import AdamW, clip_coef, grad_norm
from numpy_gpt.training.numpy_backend import numpy_device

CFG = GPTConfig(vocab_size=37, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.1)


@pytest.fixture
def cupy():
    with fake_cupy.installed() as module:
        yield module


def batch(seed=0, B=3, T=8):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, CFG.vocab_size, (B, T))
    y = rng.integers(0, CFG.vocab_size, (B, T))
    y[0, :3] = -100  # some ignored targets
    return x, y


def on_device(arrays: dict) -> None:
    for k, a in arrays.items():
        assert isinstance(a, fake_cupy.DeviceArray), f"{k} came back as {type(a).__name__}"


def test_the_fake_refuses_what_cupy_refuses(cupy):
    """The fake is only useful if it fails like CuPy: host arrays may not meet device ones."""
    a = cupy.asarray(np.ones((2, 3)))
    with pytest.raises(TypeError, match="host numpy.ndarray"):
        a + np.ones(3)
    with pytest.raises(TypeError, match="host numpy.ndarray"):
        cupy.exp(np.ones(3))
    with pytest.raises(TypeError, match="host numpy.ndarray"):
        a[np.array([0])]
    assert isinstance(a @ a.T, fake_cupy.DeviceArray)
    assert type(to_numpy(a)) is np.ndarray and get_array_module(a) is cupy


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", [
    {},
    {"gelu": "exact", "bias": False, "tie_weights": False},
    {"dropout": 0.0, "attention": "tiled", "attention_tile": 3},  # flash_attention.py
    # Llama-shaped: RMSNorm, RoPE (both layouts), SwiGLU, grouped-query attention (both kernels)
    {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "n_kv_head": 1, "bias": False,
     "tie_weights": False},
    {"norm": "rmsnorm", "position": "rope", "rope_layout": "interleaved", "mlp": "swiglu",
     "n_head": 4, "n_kv_head": 2, "dropout": 0.0, "attention": "tiled", "attention_tile": 3},
])
def test_forward_backward_on_device_equal_cpu(cupy, dtype, variant):
    """Logits, loss and every gradient, with dropout, label smoothing and ignored targets."""
    cfg = GPTConfig(**{**CFG.__dict__, **variant})
    x, y = batch()
    masks = make_dropout_masks(cfg, *x.shape, np.random.default_rng(5))
    results = []
    for device in ("cpu", "cuda"):
        model = GPT(cfg, dtype=dtype, seed=1, device=device)
        logits, loss, cache = model.forward(x, y, label_smoothing=0.1, train=True,
                                            dropout_masks=masks)
        grads = model.backward(cache)
        results.append((to_numpy(logits), loss, grads))
    (logits_cpu, loss_cpu, grads_cpu), (logits_dev, loss_dev, grads_dev) = results
    on_device(grads_dev)
    np.testing.assert_array_equal(logits_dev, logits_cpu)
    assert loss_dev == loss_cpu
    for k, g in grads_cpu.items():
        assert_same(to_numpy(grads_dev[k]), g, k)


def assert_same(a, b, name):
    """Bit for bit, but wte's gradient only up to the order of its scatter-add (see top)."""
    if name == "transformer.wte.weight":
        rtol = 1e-5 if a.dtype == np.float32 else 1e-13
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max(), err_msg=name)
    else:
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_lora_on_device_equals_cpu(cupy):
    x, y = batch(1)
    lora = LoRAConfig(rank=2, alpha=4.0, dropout=0.2, targets=("c_attn", "c_fc"))
    out = {}
    for device in ("cpu", "cuda"):
        model = GPT(CFG, dtype="float64", seed=2, device=device)
        model.add_lora(lora, seed=3)
        _, loss, cache = model.forward(x, y, train=True, rng=np.random.default_rng(4))
        out[device] = loss, model.backward(cache)
    assert out["cuda"][0] == out["cpu"][0]
    on_device(out["cuda"][1])
    for k, g in out["cpu"][1].items():
        assert_same(to_numpy(out["cuda"][1][k]), g, k)


def test_adamw_steps_on_device_equal_cpu(cupy):
    """Whole-tensor updates on the device, cache-sized slices on the CPU: the same numbers."""
    x, y = batch(2)
    models = {d: GPT(CFG, dtype="float64", seed=3, device=d) for d in ("cpu", "cuda")}
    opts = {d: AdamW(m.params, lr=1e-2, weight_decay=0.1) for d, m in models.items()}
    assert opts["cuda"].xp is cupy and len(opts["cuda"].groups) == 1
    for _ in range(3):
        for d, model in models.items():
            _, _, cache = model.forward(x, y)
            grads = model.backward(cache)
            opts[d].step(grads, grad_scale=clip_coef(grad_norm(grads), 0.5))
    on_device(models["cuda"].params)
    on_device(opts["cuda"].m)
    for k, p in models["cpu"].params.items():
        # atol: c_attn's key bias has an exactly zero true gradient (softmax is shift
        # invariant), so it moves by rounding noise only, ~1e-15 here, in both runs
        np.testing.assert_allclose(to_numpy(models["cuda"].params[k]), p, rtol=1e-12,
                                   atol=1e-12, err_msg=k)


@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_generation_on_device_equals_cpu(cupy, use_kv_cache):
    """Sampling runs on the host from the device's logits; past block_size the context crops."""
    kw = {"max_new_tokens": 12, "temperature": 0.9, "top_k": 10, "seed": 7,
          "use_kv_cache": use_kv_cache}
    tokens = {d: list(generate(GPT(CFG, dtype="float64", seed=4, device=d), [1, 2, 3], **kw))
              for d in ("cpu", "cuda")}
    assert tokens["cuda"] == tokens["cpu"] and len(tokens["cpu"]) == 12


def test_checkpoints_move_between_devices(cupy, tmp_path):
    model = GPT(CFG, dtype="float32", seed=5, device="cuda")
    model.save(tmp_path / "ckpt")
    back = GPT.load(tmp_path / "ckpt")  # written from the device, read on the CPU
    assert back.device == "cpu" and device_of(back.params["transformer.wte.weight"]) == "cpu"
    again = GPT.load(tmp_path / "ckpt", device="cuda")
    on_device(again.params)
    for k, p in back.params.items():
        np.testing.assert_array_equal(to_numpy(model.params[k]), p)
        np.testing.assert_array_equal(to_numpy(again.params[k]), p)
    assert model.to("cpu") is model and model.device == "cpu"
    assert type(model.params["transformer.wte.weight"]) is np.ndarray


def test_training_on_device_equals_cpu_and_resumes(cupy, tmp_path):
    """The shared loop with a device model (no sharding; batches drawn on the host): the same
    losses and weights as the CPU (float64), and an interrupted device run resumes bit for bit."""
    from numpy_gpt.data.dataset import TokenDataset
    from numpy_gpt.data.prepare import prepare
    from numpy_gpt.nn.checkpoint import load_checkpoint
    from numpy_gpt.training.config import TrainConfig
    from numpy_gpt.training.numpy_backend import numpy_backend
    from numpy_gpt.training.train import train

    (tmp_path / "input.txt").write_text("To be, or not to be, that is the question.\n" * 30)
    data = prepare(tmp_path / "input.txt", tmp_path / "data", fmt="text", tokenizer="char",
                   name="tiny")
    ds = TokenDataset(data)

    def cfg(device):  # threads=1: the CPU run does not shard either
        return TrainConfig(dtype="float64", dataset=str(data), n_layer=1, n_head=2, n_embd=16,
                           block_size=16, batch_size=4, max_iters=6, eval_interval=3, eval_iters=1,
                           warmup_iters=1, sample_tokens=0, dropout=0.1,
                           gradient_accumulation_steps=2, threads=1, device=device)

    runs = {d: train(cfg(d), ds, tmp_path / d, numpy_backend) for d in ("cpu", "cuda")}
    losses = {d: [(r["train_loss"], r["val_loss"]) for r in run.log] for d, run in runs.items()}
    assert len(losses["cpu"]) == 3  # evaluations at iterations 0, 3, 6
    for dev, cpu in zip(losses["cuda"], losses["cpu"], strict=True):
        assert dev == pytest.approx(cpu, rel=1e-12)
    calls = iter(range(100))
    train(cfg("cuda"), ds, tmp_path / "resumed", numpy_backend,
          should_stop=lambda: next(calls) == 3)
    train(cfg("cuda"), ds, tmp_path / "resumed", numpy_backend, resume=True)
    final = {d: load_checkpoint(tmp_path / d / "last")[1] for d in ("cpu", "cuda", "resumed")}
    for k, p in final["cpu"].items():
        np.testing.assert_allclose(final["cuda"][k], p, rtol=1e-10, atol=1e-12, err_msg=k)
        np.testing.assert_array_equal(final["resumed"][k], final["cuda"][k], err_msg=k)


def test_device_errors_are_clear(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` fails: not installed
    with pytest.raises(DeviceError, match="pip install cupy-cuda12x"):
        array_module("cuda")
    with pytest.raises(DeviceError, match="pip install cupy-cuda12x"):
        GPT(CFG, device="cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        GPT(CFG, device="tpu")
    with pytest.raises(ValueError, match="cpu or cuda"):
        numpy_device("mps")
    assert numpy_device("auto") == "cpu"
    with fake_cupy.installed() as cupy:
        cupy.is_available = lambda: False
        with pytest.raises(DeviceError, match="no usable CUDA GPU"):
            array_module("cuda")


def test_cli_reports_a_missing_cupy_in_one_line(monkeypatch, capsys, tmp_path):
    from numpy_gpt.cli.main import main

    monkeypatch.setitem(sys.modules, "cupy", None)
    out = tmp_path / "o"
    code = main(["train", "--device", "cuda", "--max-iters", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: device 'cuda'") and "Traceback" not in err
    assert not out.exists()  # checked before any data or output folder is touched
