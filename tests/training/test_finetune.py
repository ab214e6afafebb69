"""finetune: settings from the checkpoint, full and LoRA runs in both twins, exports, resume,
and the command line's one-line errors.

Runs are a few dozen steps of a 1-layer model on the tiny dialogue set (tests/tiny_chat.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import twin_named

import torch_gpt
from numpy_gpt import GPT, GPTConfig
from numpy_gpt.cli.main import main
from numpy_gpt.data.chat_format import EOT, encode_alpaca_prompt
from numpy_gpt.data.dataset import TokenDataset
from numpy_gpt.data.datasets import find_data_file
from numpy_gpt.data.prepare import prepare
from numpy_gpt.generation.chat import ChatSession, checkpoint_template
from numpy_gpt.generation.sampling import SamplingConfig
from numpy_gpt.nn.checkpoint import checkpoint_fingerprint, load_checkpoint, read_meta
from numpy_gpt.nn.lora import AdapterError, LoRAConfig, adapter_fingerprint, load_adapter
from numpy_gpt.tokenizers import BPETokenizer
from numpy_gpt.training.finetune import finetune, finetune_config, open_finetune_dataset

LCFG = LoRAConfig(rank=4, alpha=8.0, dropout=0.05, targets=("c_attn", "c_proj", "c_fc"))
QUICK = {"max_iters": 12, "eval_interval": 6, "eval_iters": 2, "batch_size": 4,
         "learning_rate": 3e-3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_ft(tiny_chat, out: Path, backend: str, lora: LoRAConfig | None, **overrides):
    folder, ckpt = tiny_chat
    tok = TokenDataset(folder).tokenizer()
    dataset = open_finetune_dataset(folder, tok)
    tcfg = finetune_config(ckpt, dataset.folder, {**QUICK, **overrides}, lora=lora is not None)
    return finetune(tcfg, dataset, out, twin_named(backend), lora)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_one_seed_is_one_lora_run_in_both_twins(tiny_chat, tmp_path, dropout) -> None:
    """A LoRA fine-tune is the same run in either twin: both draw lora_A from NumPy's
    generator with the run's seed, so the adapters agree to float64 rounding; with dropout
    (the model's and the adapters') when torch takes numpy_gpt's masks (--dropout-masks)."""
    lcfg = LoRAConfig(rank=4, alpha=8.0, dropout=dropout, targets=("c_attn", "c_fc"))
    adapters = {}
    for twin in ("numpy", "torch"):
        result = run_ft(tiny_chat, tmp_path / twin, twin, lcfg, dtype="float64",
                        dropout=dropout, dropout_masks="numpy", seed=11)
        adapters[twin] = load_adapter(result.adapter_dir)[1]
    assert adapters["numpy"].keys() == adapters["torch"].keys()
    for name, value in adapters["numpy"].items():
        ref = adapters["torch"][name]
        err = np.abs(value - ref).max() / np.abs(ref).max()
        assert err <= 1e-10, (name, err)


def test_settings_come_from_the_checkpoint(tiny_chat) -> None:
    folder, ckpt = tiny_chat
    tcfg = finetune_config(ckpt, folder, {"max_iters": 7}, lora=True)
    assert (tcfg.n_layer, tcfg.n_embd, tcfg.block_size) == (1, 16, 64)
    assert tcfg.init_from == str(ckpt) and tcfg.loss_on == "response" and tcfg.patience > 0
    assert tcfg.learning_rate == 1e-3 and tcfg.min_lr == pytest.approx(1e-4)
    assert finetune_config(ckpt, folder, {}, lora=False).learning_rate == 3e-4
    with pytest.raises(ValueError, match="exceeds the checkpoint's block_size 64"):
        finetune_config(ckpt, folder, {"block_size": 65}, lora=False)
    with pytest.raises(ValueError, match="cannot change in a fine-tune"):
        finetune_config(ckpt, folder, {"n_embd": 32}, lora=False)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_lora_trains_only_the_adapters_and_merges(tiny_chat, tmp_path, backend: str) -> None:
    result = run_ft(tiny_chat, tmp_path / "run", backend, LCFG)
    _, base, _ = load_checkpoint(tiny_chat[1])
    _, kept, _ = load_checkpoint(tmp_path / "run" / "best")
    for k, v in base.items():  # the frozen base, bit for bit
        np.testing.assert_array_equal(kept[k], v, err_msg=k)
    lcfg, adapter, meta = load_adapter(result.adapter_dir)
    assert lcfg == LCFG and meta["base_checkpoint"] == str(tiny_chat[1])
    assert all(np.abs(v).max() > 0 for k, v in adapter.items() if ".lora_B." in k)  # trained

    # merged == adapted, and the merged export loads in both twins
    assert result.model_dir == tmp_path / "run" / "merged"
    adapted = GPT.load(tiny_chat[1], dtype="float64")
    adapted.set_lora(lcfg, adapter)
    idx = np.array([[3, 1, 4, 1, 5, 9, 2, 6]])
    want = adapted.forward(idx)[0]
    merged = GPT.load(result.model_dir, dtype="float64")
    np.testing.assert_allclose(merged.forward(idx)[0], want, rtol=1e-5, atol=1e-6)
    t_merged = torch_gpt.GPT.load(result.model_dir, dtype="float64").eval()
    with torch.no_grad():
        np.testing.assert_allclose(t_merged(torch.from_numpy(idx))[0].numpy(), want,
                                   rtol=1e-5, atol=1e-6)
    assert (result.model_dir / "tokenizer.json").is_file()
    assert checkpoint_template(result.model_dir) == "chat"  # trained on dialogue (JSONL)
    assert checkpoint_template(tiny_chat[1]) == "chat"  # the default when a folder does not say

    # what the adapter was trained on is recorded, in every copy of it
    for folder in (result.adapter_dir, tmp_path / "run" / "best" / "adapter",
                   tmp_path / "run" / "last" / "adapter"):
        meta = load_adapter(folder)[2]
        assert meta["chat_template"] == "chat", folder
        assert meta["base_fingerprint"] == checkpoint_fingerprint(tiny_chat[1]), folder
    merged_meta = read_meta(result.model_dir)
    assert merged_meta["merged_adapters"] == [adapter_fingerprint(lcfg, adapter)]
    assert "chat_template" not in read_meta(tmp_path / "run" / "best")  # the base's weights
    with pytest.raises(AdapterError, match="is already merged into"):
        ChatSession.load(twin_named(backend), result.model_dir, adapter=result.adapter_dir)
    with pytest.raises(ValueError, match=r"holds the frozen base weights of a LoRA run, not the "
                                         r"fine-tuned model: chat with the run's merged folder"):
        ChatSession.load(twin_named(backend), tmp_path / "run" / "best")
    session = ChatSession.load(twin_named(backend), tmp_path / "run" / "best",
                               adapter=result.adapter_dir)
    assert session.template_source == "as recorded by the adapter" and not session.notices


def test_a_short_fine_tune_lowers_val_loss(tiny_chat, tmp_path) -> None:
    """Full and LoRA fine-tunes of the (random) base: the best val loss beats the first."""
    for lora in (None, LCFG):
        r = run_ft(tiny_chat, tmp_path / str(lora is None), "numpy", lora, max_iters=40,
                   eval_interval=20)
        assert r.val_loss_best < r.val_loss_before - 0.05, (lora, r.train.log)
        assert [rec["iter"] for rec in r.train.log] == [0, 20, 40]


def test_full_fine_tune_matches_across_twins(tiny_chat, tmp_path) -> None:
    """The same run in both twins (no dropout): the same validation losses."""
    logs = [run_ft(tiny_chat, tmp_path / b, b, None, max_iters=6, eval_interval=3).train.log
            for b in ("numpy", "torch")]
    np.testing.assert_allclose([r["val_loss"] for r in logs[1]],
                               [r["val_loss"] for r in logs[0]], rtol=1e-4)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_early_stopping_and_resume(tiny_chat, tmp_path, backend: str) -> None:
    out = tmp_path / "run"
    r = run_ft(tiny_chat, out, backend, LCFG, max_iters=200, eval_interval=2, learning_rate=1e-9,
               min_lr=0.0, patience=2)
    assert r.train.status == "early_stopped" and r.train.iter < 200
    stopped_at = r.train.iter
    code = main(["finetune", "--resume", "--out", str(out), "--max-iters", str(stopped_at + 4),
                 "--patience", "0", "--no-plot"], twin=twin_named(backend))
    assert code == 0
    assert (out / "merged").is_dir() and (out / "adapter").is_dir()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["iter"] == stopped_at + 4


def test_cli_full_and_lora_runs(tiny_chat, tmp_path, capsys) -> None:
    folder, ckpt = tiny_chat
    common = ["--ckpt", str(ckpt), "--dataset", str(folder), "--max-iters", "4",
              "--eval-interval", "2", "--eval-iters", "1", "--batch-size", "2", "--no-plot"]
    assert main(["finetune", *common, "--out", str(tmp_path / "full")],
                twin=twin_named("numpy")) == 0
    assert (tmp_path / "full" / "best").is_dir() and not (tmp_path / "full" / "merged").exists()
    assert main(["finetune", *common, "--out", str(tmp_path / "lora"), "--lora",
                 "--lora-rank", "2", "--lora-targets", "c_fc"], twin=twin_named("torch")) == 0
    out = capsys.readouterr().out
    assert "val loss" in out and "before ->" in out and "merged model:" in out
    assert load_adapter(tmp_path / "lora" / "adapter")[0].targets == ("c_fc",)


def _error(capsys, args: list[str], backend: str = "numpy") -> str:
    assert main(["finetune", *args], twin=twin_named(backend)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_input_is_one_line(tiny_chat, tmp_path, capsys, monkeypatch) -> None:
    folder, ckpt = tiny_chat
    monkeypatch.chdir(tmp_path)
    out = ["--out", str(tmp_path / "x")]
    assert "no checkpoint folder at" in _error(
        capsys, ["--ckpt", str(tmp_path / "nope"), "--dataset", str(folder), *out])
    assert "'q_proj' is not a module of this GPT; choose among c_attn" in _error(
        capsys, ["--ckpt", str(ckpt), "--dataset", str(folder), "--lora",
                 "--lora-targets", "c_attn,q_proj", *out])
    assert "--lora-rank only applies with --lora" in _error(
        capsys, ["--ckpt", str(ckpt), "--dataset", str(folder), "--lora-rank", "4", *out])
    assert "give --ckpt DIR" in _error(capsys, ["--dataset", str(folder)])
    assert "neither a prepared folder" in _error(
        capsys, ["--ckpt", str(ckpt), "--dataset", "no_such_set", *out])

    # a folder prepared with another tokenizer (a different character set)
    other = tmp_path / "other.jsonl"
    other.write_text('{"messages": [{"role": "user", "content": "XYZ"}, '
                     '{"role": "assistant", "content": "QQ"}]}\n' * 10)
    prepared = prepare(other, tmp_path / "other", tokenizer="char", val_fraction=0.2)
    assert "different tokenizer" in _error(
        capsys, ["--ckpt", str(ckpt), "--dataset", str(prepared), *out], backend="torch")


def test_named_dataset_is_prepared_with_the_checkpoint_tokenizer(tiny_chat, tmp_path,
                                                                  monkeypatch) -> None:
    """`--dataset instruct` is encoded with the checkpoint's tokenizer; a char tokenizer that
    lacks characters of the data is a clear error."""
    try:
        find_data_file("instruct/instruction-data.json")
    except ValueError:
        pytest.skip("the instruction data set is not in any data dir")
    monkeypatch.chdir(tmp_path)
    tok = TokenDataset(tiny_chat[0]).tokenizer()
    with pytest.raises(ValueError, match="checkpoint's char tokenizer cannot encode the instruct"):
        open_finetune_dataset("instruct", tok)
    # a byte-level tokenizer covers any text: prepared once under out/data, then reused
    bpe = BPETokenizer.train("hello world, what is this?", 270, special_tokens=[EOT])
    ds = open_finetune_dataset("instruct", bpe)
    assert ds.folder.parent == Path("out/data") and ds.folder.name.startswith("instruct-bpe-")
    assert ds.tokenizer().to_dict() == bpe.to_dict() and ds.layout == "examples"
    stamp = (ds.folder / "meta.json").stat().st_mtime_ns
    assert open_finetune_dataset("instruct", bpe).folder == ds.folder
    assert (ds.folder / "meta.json").stat().st_mtime_ns == stamp


def test_lora_on_instructions_chats_in_the_alpaca_format(tiny_chat, tmp_path) -> None:
    """The issue's case: a LoRA adapter trained on Alpaca instructions, put on its base in
    chat, prompts in the alpaca format (as the merged model does), recorded at fine-tune time."""
    examples = [{"instruction": f"add {a} and {b}", "input": "", "output": f"{a + b}."}
                for a in range(5) for b in range(4)]
    src = tmp_path / "instructions.json"
    src.write_text(json.dumps(examples), encoding="utf-8")
    tok = BPETokenizer.train(json.dumps(examples), 270, special_tokens=[EOT])
    base = tmp_path / "base"
    GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=1, n_head=2, n_embd=16),
        seed=0).save(base, tokenizer=tok)
    folder = prepare(src, tmp_path / "data", fmt="alpaca", tokenizer=tok, val_fraction=0.2)
    dataset = open_finetune_dataset(folder, tok)
    tcfg = finetune_config(base, dataset.folder, {**QUICK, "max_iters": 2, "eval_interval": 2},
                           lora=True)
    result = finetune(tcfg, dataset, tmp_path / "run", twin_named("numpy"), LCFG)
    assert load_adapter(result.adapter_dir)[2]["chat_template"] == "alpaca"
    for ckpt, adapter in ((base, result.adapter_dir), (result.model_dir, None)):
        session = ChatSession.load(twin_named("numpy"), ckpt, adapter=adapter,
                                   config=SamplingConfig(max_new_tokens=8))
        assert session.template == "alpaca"
        ids = session.fit_prompt("add 2 and 3")[0]
        assert ids == encode_alpaca_prompt(tok, "add 2 and 3")
