"""Export to Hugging Face (numpy_gpt.hf.exporter, `export --format hf`), checked by transformers.

Each exported folder must load in GPT2LMHeadModel with nothing missing, unexpected or warned
about, give our logits (float64 <= 1e-12, float32 <= 1e-5: parity.tolerances) and our greedy
tokens, and import back through numpy_gpt.hf.importer bit for bit. Tokenizers: GPT-2's BPE (files
from the shared data folder, skipped when absent) and our byte-level BPE load in
GPT2TokenizerFast and give our ids; a char tokenizer is kept as our own file and said so.
Bad input ends as one `error:` line with nothing written. Skipped without transformers.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import twin_named

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.cli.main import main
from numpy_gpt.data.dataset import DataError
from numpy_gpt.data.datasets import find_data_file
from numpy_gpt.generation.generate import generate
from numpy_gpt.hf.exporter import ACTIVATION_BY_GELU, export_hf
from numpy_gpt.hf.importer import GELU_BY_ACTIVATION, load_hf_gpt2
from numpy_gpt.nn.lora import LoRAConfig, init_lora_params, save_adapter
from numpy_gpt.tokenizers import BPETokenizer, CharTokenizer, GPT2Tokenizer, load_tokenizer
from parity.tolerances import tolerance

transformers = pytest.importorskip("transformers", reason="transformers is not installed")
torch = pytest.importorskip("torch", reason="torch is not installed")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[2]


def _gpt2_dir() -> Path | None:
    """Where the GPT-2 BPE files are, found as test_tokenizers finds them, or None."""
    try:
        find_data_file("gpt2/vocab.bpe")
        return find_data_file("gpt2/encoder.json").parent
    except DataError:
        return None


GPT2_DIR = _gpt2_dir()
needs_gpt2 = pytest.mark.skipif(GPT2_DIR is None, reason="GPT-2 encoder.json/vocab.bpe absent")

CFG = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=8)
CASES = {  # what HF GPT-2 must represent exactly
    "tied": CFG,
    "untied": CFG.replace(tie_weights=False),
    "no-bias": CFG.replace(bias=False),
    "gelu-exact": CFG.replace(gelu="exact", layer_norm_eps=1e-6),
}
TEXT = "Hello world!  It's 2024:\n\tnaïve café, 你好 <|endoftext|> done "


def _model(cfg: GPTConfig, dtype: str = "float64", seed: int = 0) -> GPT:
    """A model whose every parameter (biases and LayerNorms too) is random and non-trivial."""
    rng = np.random.default_rng(seed)
    model = GPT(cfg, dtype=dtype, seed=seed)
    for p in model.params.values():
        p[...] = (0.3 * rng.standard_normal(p.shape)).astype(dtype)
    return model


def _hf_load(out: Path, model_class: str = "GPT2LMHeadModel"):
    """GPT2LMHeadModel (or model_class).from_pretrained(out), asserting it reports and logs
    nothing wrong."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        model, info = getattr(transformers, model_class).from_pretrained(
            out, output_loading_info=True)
    finally:
        logger.removeHandler(handler)
    assert not any(info.values()), info
    assert [r.getMessage() for r in records] == []
    return model.eval()


def assert_same_greedy_tokens(ours: GPT, hf) -> None:
    """10 greedy tokens after a 3-token prompt: ours (KV cache) == transformers' generate."""
    prompt = [3, 1, 4]
    want = list(generate(ours, prompt, max_new_tokens=10, greedy=True))
    with torch.no_grad():
        got = hf.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False,
                          attention_mask=torch.ones(1, 3, dtype=torch.long))
    assert got[0, 3:].tolist() == want


def _export(tmp_path: Path, model: GPT, tokenizer=None, name: str = "ckpt") -> Path:
    model.save(tmp_path / name, tokenizer=tokenizer)
    export_hf(tmp_path / name, tmp_path / "hf")
    return tmp_path / "hf"


def test_activation_map_is_the_importers_inverse() -> None:
    assert {GELU_BY_ACTIVATION[a]: a for a in ACTIVATION_BY_GELU.values()} == ACTIVATION_BY_GELU


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES))
def test_export_loads_in_transformers_and_matches(tmp_path: Path, case: str, dtype: str) -> None:
    cfg = CASES[case]
    ours = _model(cfg, dtype)
    out = _export(tmp_path, ours)
    hf = _hf_load(out).double() if dtype == "float64" else _hf_load(out)
    assert hf.dtype == getattr(torch, dtype)

    idx = np.random.default_rng(1).integers(0, cfg.vocab_size, size=(2, cfg.block_size))
    logits = ours.forward(idx)[0]
    with torch.no_grad():
        theirs = hf(torch.from_numpy(idx)).logits.numpy()
    err = np.abs(theirs - logits).max() / np.abs(logits).max()
    assert err <= tolerance(dtype, "cpu", "forward"), err

    assert_same_greedy_tokens(ours, hf)

    back_cfg, back = load_hf_gpt2(out, dtype=dtype)
    assert back_cfg == cfg.replace(bias=True)  # HF GPT-2 always has biases
    for name, value in ours.params.items():
        assert back[name].dtype == value.dtype and np.array_equal(back[name], value), name
    for name in set(back) - set(ours.params):  # bias=False: exactly zero biases
        assert not cfg.bias and name.endswith(".bias") and not back[name].any(), name


def test_config_and_weights_in_hf_layout(tmp_path: Path) -> None:
    """What maps to what: GPT2Config's fields, Conv1D (in, out) weights, no tied lm_head."""
    out = _export(tmp_path, _model(CFG.replace(dropout=0.1), "float32"))
    hf = json.loads((out / "config.json").read_text())
    assert hf["model_type"] == "gpt2" and hf["architectures"] == ["GPT2LMHeadModel"]
    assert (hf["n_positions"], hf["n_ctx"], hf["n_embd"], hf["n_layer"], hf["n_head"],
            hf["vocab_size"]) == (16, 16, 8, 2, 2, 11)
    assert hf["activation_function"] == "gelu_new" and hf["tie_word_embeddings"] is True
    assert hf["resid_pdrop"] == hf["embd_pdrop"] == hf["attn_pdrop"] == 0.1
    assert hf["bos_token_id"] is None and hf["eos_token_id"] is None  # no tokenizer: unknown
    from safetensors.numpy import load_file

    tensors = load_file(str(out / "model.safetensors"))
    assert "lm_head.weight" not in tensors
    assert tensors["transformer.h.0.mlp.c_fc.weight"].shape == (8, 32)  # Conv1D (in, out)
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


@needs_gpt2
def test_gpt2_tokenizer_files_load_in_gpt2_tokenizer_fast(tmp_path: Path) -> None:
    tok = GPT2Tokenizer.from_files(GPT2_DIR / "encoder.json", GPT2_DIR / "vocab.bpe")
    cfg = CFG.replace(vocab_size=50304, block_size=8)
    out = _export(tmp_path, _model(cfg, "float32"), tok)
    # The merges rebuilt from the ranks are OpenAI's vocab.bpe line for line.
    want = [ln for ln in (GPT2_DIR / "vocab.bpe").read_text("utf-8").split("\n")[1:] if ln]
    assert (out / "merges.txt").read_text("utf-8").split("\n")[1:-1] == want
    assert json.loads((out / "vocab.json").read_text("utf-8")) == json.loads(
        (GPT2_DIR / "encoder.json").read_text("utf-8"))
    hf_tok = transformers.GPT2TokenizerFast.from_pretrained(out)
    assert hf_tok(TEXT)["input_ids"] == tok.encode(TEXT, allowed_special="all")
    assert hf_tok.eos_token_id == hf_tok.bos_token_id == 50256
    hf = json.loads((out / "config.json").read_text())
    assert hf["eos_token_id"] == hf["bos_token_id"] == 50256
    _hf_load(out)


def test_our_bpe_tokenizer_exports_too(tmp_path: Path) -> None:
    tok = BPETokenizer.train(TEXT.replace("<|endoftext|>", "") * 20 + "the the then", 300)
    out = _export(tmp_path, _model(CFG.replace(vocab_size=tok.vocab_size), "float32"), tok)
    hf_tok = transformers.GPT2TokenizerFast.from_pretrained(out)
    for text in (TEXT, "then the café 2024 x"):
        ids = tok.encode(text, allowed_special="all")
        assert hf_tok(text)["input_ids"] == ids
        assert hf_tok.decode(ids) == text


def test_char_tokenizer_kept_as_ours_and_said(tmp_path: Path) -> None:
    tok = CharTokenizer.train("hello world")
    _model(CFG.replace(vocab_size=tok.vocab_size), "float32").save(tmp_path / "ck", tok)
    notes = export_hf(tmp_path / "ck", tmp_path / "hf")
    assert any("char not exported for Hugging Face" in n for n in notes), notes
    assert not (tmp_path / "hf" / "vocab.json").exists()
    again = load_tokenizer(tmp_path / "hf" / "numpy_gpt_tokenizer.json")
    assert again.encode("hello") == tok.encode("hello")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_cli_either_twin_writes_the_same_folder(tmp_path: Path, backend: str, capsys) -> None:
    _model(CFG.replace(bias=False), "float32").save(tmp_path / "ck")
    assert main(["export", "--ckpt", str(tmp_path / "ck"), "--format", "hf",
                 "--out", str(tmp_path / backend)], twin=twin_named(backend)) == 0
    out = capsys.readouterr().out
    assert "bias=False: written as zero biases" in out and "wrote" in out
    export_hf(tmp_path / "ck", tmp_path / "ref")
    for f in ("config.json", "model.safetensors"):
        assert (tmp_path / backend / f).read_bytes() == (tmp_path / "ref" / f).read_bytes()


def test_overwrite(tmp_path: Path, capsys) -> None:
    _model(CFG, "float32").save(tmp_path / "ck")
    args = ["export", "--ckpt", str(tmp_path / "ck"), "--out", str(tmp_path / "hf")]
    assert main(args) == 0
    first = (tmp_path / "hf" / "model.safetensors").read_bytes()
    assert main(args) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    _model(CFG, "float32", seed=5).save(tmp_path / "ck")
    assert main([*args, "--overwrite"]) == 0
    assert (tmp_path / "hf" / "model.safetensors").read_bytes() != first


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (export arguments, what the one error line says)."""
    good = tmp_path / "good"
    model = _model(CFG, "float32")
    model.save(good)
    corrupt = tmp_path / "corrupt"
    model.save(corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 10)
    badjson = tmp_path / "badjson"
    model.save(badjson)
    (badjson / "config.json").write_text("{not json")
    badtok = tmp_path / "badtok"
    model.save(badtok, tokenizer=CharTokenizer.train("abc"))
    (badtok / "tokenizer.json").write_text('{"kind": "mystery"}')
    lcfg = LoRAConfig(rank=2)
    lora = init_lora_params(CFG, lcfg, np.dtype("float32"), np.random.default_rng(0))
    save_adapter(tmp_path / "adapter", lcfg, lora)
    lora_best = tmp_path / "lora_best"
    model.save(lora_best)
    save_adapter(lora_best / "adapter", lcfg, lora)
    taken = tmp_path / "taken"
    (taken / "mine").mkdir(parents=True)
    run = tmp_path / "run"  # a training run's OUT: best/ and last/ inside
    model.save(run / "best")
    model.save(run / "last")
    out = str(tmp_path / "out")
    return {
        "missing": (["--ckpt", str(tmp_path / "nope"), "--out", out], "no checkpoint folder"),
        "corrupt": (["--ckpt", str(corrupt), "--out", out], "truncated or corrupt"),
        "bad json": (["--ckpt", str(badjson), "--out", out], "not valid JSON"),
        "bad tokenizer": (["--ckpt", str(badtok), "--out", out], "unknown tokenizer kind"),
        "adapter": (["--ckpt", str(tmp_path / "adapter"), "--out", out], "LoRA adapter only"),
        "lora best": (["--ckpt", str(lora_best), "--out", out], "frozen base weights"),
        "format": (["--ckpt", str(good), "--format", "onnx", "--out", out], "only format"),
        "into ckpt": (["--ckpt", str(good), "--out", str(good), "--overwrite"],
                      "would replace the checkpoint"),
        "not ours": (["--ckpt", str(good), "--out", str(taken), "--overwrite"],
                     "not an HF GPT-2"),
        "exists": (["--ckpt", str(good), "--out", str(taken)], "already exists"),
        "run folder": (["--ckpt", str(run), "--out", out],
                       f"{run} is a training run's folder, not a checkpoint: pass "
                       f"{run / 'best'} (the lowest val loss) or {run / 'last'} (the latest "
                       "step)"),
    }


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    cases = _bad_inputs(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for name, (args, says) in cases.items():
        assert main(["export", *args]) == 1, name
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], \
            (name, captured.err)
        assert captured.out == "", (name, captured.out)  # no plan line before a refusal
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_module_command_line(tmp_path: Path) -> None:
    """`python -m torch_gpt export` end to end, and a refusal without a traceback."""
    _model(CFG, "float32").save(tmp_path / "ck")
    cmd = [sys.executable, "-m", "torch_gpt", "export", "--ckpt", str(tmp_path / "ck"),
           "--out", str(tmp_path / "hf")]
    ok = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert ok.returncode == 0, ok.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stderr.strip().startswith("error: --out")
