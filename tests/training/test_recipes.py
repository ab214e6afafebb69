"""The recipes (issue 19): each preset run end to end at a tiny size, through the commands the
README shows (prepare, train, sample / eval / finetune / chat), on small raw files written to a
temporary data dir; plus the warm-restart schedule through the training loop and a resume.

Sizes are overridden by flags (1 layer, 16 wide, a few iterations); the preset's own settings
(tokenizer, padding, accumulation, schedule, label smoothing...) are kept and checked in the
settings the run stored. The GPT-2 recipes need GPT-2's encoder.json and vocab.bpe (the shared
data folder); they are skipped, with the reason, where those files are not found.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import CITIZENS as TEXT
from conftest import twin_named
from tiny_train import StopDuring, factory, final_params, tiny

from numpy_gpt.cli.main import main
from numpy_gpt.data.dataset import DataError, TokenDataset
from numpy_gpt.data.datasets import find_data_file
from numpy_gpt.nn.checkpoint import load_trainer_state, read_meta
from numpy_gpt.nn.optim import get_lr_restarts
from numpy_gpt.training.config import PRESETS, TrainConfig, resolve
from numpy_gpt.training.train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--eval-interval", "2", "--eval-iters", "1", "--warmup-iters", "1",
        "--sample-tokens", "0", "--no-plot"]
RECIPES = ("dialogue-word", "chat-bpe", "tinystories-gpt2", "shakespeare-char",
           "shakespeare-char-cpu", "instruct", "dialogue")


def gpt2_files() -> Path | None:
    """The folder of GPT-2's encoder.json and vocab.bpe, if the data dirs have them."""
    try:
        return find_data_file("gpt2/encoder.json").parent
    except DataError:
        return None


needs_gpt2 = pytest.mark.skipif(gpt2_files() is None, reason="GPT-2's encoder.json/vocab.bpe "
                                "are not in $GPT_DATA_DIR, ./data or ../shared/data")


def dialogue_csv() -> str:
    """Question/answer rows, each answer the next question (one chained conversation per
    topic), like the dialogue CSV."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["", "question", "answer"])
    turns = ["hi, how are you doing?", "i'm fine. how about yourself?",
             "i'm pretty good. thanks for asking.", "no problem. so how have you been?",
             "i've been great. what about you?", "i've been good. i'm in school right now."]
    n = 0
    for _ in range(12):
        for q, a in zip(turns, turns[1:]):
            w.writerow([n, q, a])
            n += 1
    return out.getvalue()


def stories() -> str:
    story = ("Once upon a time there was a little boy named Ben. Ben loved to explore. "
             "One day he found a red ball in the park and he was very happy.\n")
    return "<|endoftext|>\n".join(story.replace("Ben", name) for name in
                                  ("Ben", "Lily", "Tom", "Sue", "Max", "Amy") * 4)


def alpaca() -> str:
    rows = [{"instruction": f"Add {a} and {b}.", "input": "", "output": f"The sum is {a + b}."}
            for a in range(6) for b in range(4)]
    rows += [{"instruction": "Rewrite the word in capitals.", "input": w, "output": w.upper()}
             for w in ("cat", "dog", "sun", "tree", "blue", "red")]
    return json.dumps(rows)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """A data dir with every named dataset's file, small; gpt2/ links the real files."""
    root = tmp_path_factory.mktemp("raw")
    files = {"dialogue/Conversation.csv": dialogue_csv(), "tinyshakespeare/input.txt": TEXT,
             "tinystories/tinystories_10k.txt": stories(),
             "instruct/instruction-data.json": alpaca()}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True)
        (root / rel).write_text(text, encoding="utf-8")
    if gpt2_files() is not None:
        (root / "gpt2").symlink_to(gpt2_files(), target_is_directory=True)
    return root


def cli(capsys, *args: str, backend: str = "numpy") -> str:
    """One command in this process; its stdout (a failure shows stderr)."""
    code = main(list(args), twin=twin_named(backend))
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    assert "Traceback" not in err
    return out


def run_recipe(capsys, raw: Path, preset: str, *extra: str, backend: str = "numpy",
               iters: int = 4) -> tuple[Path, dict, str]:
    """train --preset at a tiny size; (its output folder, the settings it stored, what the
    command printed)."""
    out = Path(f"out/{preset}-{backend}")
    text = cli(capsys, "train", "--preset", preset, *TINY, "--max-iters", str(iters),
               "--data-dir", str(raw), *extra, backend=backend)
    assert (out / "best" / "model.safetensors").is_file() and (out / "log.jsonl").is_file()
    return out, load_trainer_state(out / "last")["train_config"], text


def stored_model(folder: Path) -> dict:
    return read_meta(folder)["model"]


# ---------------------------------------------------------------------------- the presets


def test_every_recipe_is_a_preset_that_resolves():
    assert set(RECIPES) <= set(PRESETS)
    for name in RECIPES:
        resolve(name, None, {})  # valid settings, schedule included
    ts = resolve("tinystories-gpt2", None, {})
    assert (ts.n_layer, ts.n_head, ts.n_embd, ts.block_size) == (4, 4, 256, 128)
    assert (ts.learning_rate, ts.min_lr, ts.beta2, ts.weight_decay) == (1e-4, 1e-5, 0.95, 0.1)
    assert ts.dropout == 0.1 and ts.bias and ts.label_smoothing > 0
    assert ts.gradient_accumulation_steps > 1 and ts.model_vocab_size(50257) == 50304
    # the two restart cycles end on the floor exactly at max_iters
    assert ts.warmup_iters + ts.lr_restart_period * (1 + ts.lr_restart_mult) == ts.max_iters
    chat = resolve("chat-bpe", None, {})
    assert (chat.n_layer, chat.n_head, chat.n_embd, chat.tie_weights) == (4, 4, 256, True)
    assert (chat.batch_size, chat.gradient_accumulation_steps, chat.tokenizer) == (2, 8, "bpe")
    word = resolve("dialogue-word", None, {})
    assert word.tokenizer == "word" and word.dropout > 0 and word.weight_decay > 0
    assert resolve("dialogue", None, {}).tokenizer is None  # unchanged: GPT-2 BPE


@pytest.mark.parametrize("changes, message", [
    ({"lr_schedule": "step"}, "--lr-schedule must be one of cosine, cosine-restarts"),
    ({"lr_schedule": "cosine-restarts"}, "needs --lr-restart-period N"),
    ({"lr_restart_period": 10}, "--lr-restart-period applies to --lr-schedule cosine-restarts"),
    ({"lr_restart_mult": 2}, "--lr-restart-mult applies to --lr-schedule cosine-restarts"),
    ({"lr_schedule": "cosine-restarts", "lr_restart_period": 0}, "--lr-restart-period must be"),
    ({"lr_schedule": "cosine-restarts", "lr_restart_period": 5, "lr_decay_iters": 50},
     "--lr-decay-iters applies to --lr-schedule cosine only"),
    ({"pad_vocab_to": 0}, "--pad-vocab-to must be >= 1"),
])
def test_a_schedule_setting_that_cannot_apply_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


# ---------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_warm_restarts_through_the_loop_resume_exactly_and_match_torch(backend, citizens_chars,
                                                                        tmp_path):
    """The loop's rates (logged at every iteration) are torch's CosineAnnealingWarmRestarts
    after the warmup; a run stopped mid-cycle and resumed ends with the same parameters, bit
    for bit, and the same rates, as one that never stopped."""
    torch = pytest.importorskip("torch")
    cfg = tiny(citizens_chars, max_iters=16, eval_interval=1, lr_schedule="cosine-restarts",
               lr_restart_period=3, lr_restart_mult=2)
    ds = TokenDataset(citizens_chars)
    whole = train(cfg, ds, tmp_path / "a", factory(backend))
    stop = StopDuring(7, 1)  # stops at iteration 7, inside the 6-step second cycle
    stopped = train(cfg, ds, tmp_path / "b", factory(backend), reporter=stop, should_stop=stop)
    assert stopped.status == "interrupted" and stopped.iter == 7
    resumed = train(cfg, ds, tmp_path / "b", factory(backend), resume=True)
    a, b = final_params(tmp_path / "a"), final_params(tmp_path / "b")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    lrs = [r["lr"] for r in whole.log]
    assert [r["lr"] for r in resumed.log] == lrs
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2,
                                                                 eta_min=cfg.min_lr)
    for it in range(cfg.warmup_iters, cfg.max_iters + 1):
        assert lrs[it] == opt.param_groups[0]["lr"], it
        opt.step()
        sched.step()
    stored = load_trainer_state(tmp_path / "b" / "last")["train_config"]
    assert (stored["lr_schedule"], stored["lr_restart_period"], stored["lr_restart_mult"]) == (
        "cosine-restarts", 3, 2)


def test_resume_keeps_the_schedule(citizens_chars, capsys, tmp_path, monkeypatch):
    """--resume continues the stored schedule; changing it is refused in one line."""
    monkeypatch.chdir(tmp_path)
    args = ["train", "--dataset", str(citizens_chars), *TINY, "--max-iters", "4", "--out", "r",
            "--lr-schedule", "cosine-restarts", "--lr-restart-period", "2"]
    cli(capsys, *args)
    code = main(["train", "--resume", "--out", "r", "--lr-restart-period", "3"])
    err = capsys.readouterr().err
    assert code == 1 and "--lr-restart-period 3: cannot change on --resume" in err
    assert "lr_restart_period=2" in err
    cli(capsys, "train", "--resume", "--out", "r", "--max-iters", "6", "--no-plot")
    log = [json.loads(line) for line in Path("r/log.jsonl").read_text().splitlines()]
    stored = TrainConfig.from_dict(load_trainer_state(Path("r/last"))["train_config"])
    assert [r["iter"] for r in log] == [0, 2, 4, 6]
    assert [r["lr"] for r in log] == [get_lr_restarts(
        r["iter"], learning_rate=stored.learning_rate, warmup_iters=1, restart_period=2,
        restart_mult=1, min_lr=stored.min_lr) for r in log]
    # cycles start at 1, 3, 5: every even iteration is half way down one
    assert log[-1]["lr"] == pytest.approx((stored.learning_rate + stored.min_lr) / 2)


# ---------------------------------------------------------------------------- the recipes


def test_dialogue_word_recipe(raw, capsys, tmp_path, monkeypatch):
    """prepare (words + <END>) -> train -> sample with a temperature, stopping at <END> ->
    the chat page."""
    monkeypatch.chdir(tmp_path)
    out = cli(capsys, "prepare", "dialogue", "--tokenizer", "word", "--data-dir", str(raw))
    assert "word tokenizer" in out
    run, stored, _ = run_recipe(capsys, raw, "dialogue-word", "--batch-size", "4")
    assert stored["tokenizer"] == "word" and stored["dropout"] == 0.1
    tok = json.loads((run / "best" / "tokenizer.json").read_text())
    assert tok["kind"] == "word" and "<END>" in json.dumps(tok)
    # the prompt is a turn and its <END>: the sample is the reply, up to the next <END>
    text = cli(capsys, "sample", "--ckpt", str(run / "best"), "--prompt", "how are you? <END>",
               "--temperature", "0.8", "--stop", "<END>", "--max-new-tokens", "12")
    assert text.count("<END>") == 1  # the prompt's
    chat_page(run / "best")


def chat_page(ckpt: Path) -> None:
    """One message on the Streamlit page (chat_app.py), where streamlit is installed."""
    pytest.importorskip("streamlit", reason="the chat page needs streamlit")
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "chat_app.py"),
                           default_timeout=60).run()
    at.sidebar.text_input(key="ckpt").input(str(ckpt)).run()
    assert not at.exception and not at.error
    at.chat_input[0].set_value("how are you?").run()
    assert not at.exception and len(at.chat_message) == 2


def test_chat_bpe_recipe(raw, capsys, tmp_path, monkeypatch):
    """A BPE trained on the dialogue CSV, tied weights, batch 2 x 8 accumulation steps ->
    terminal chat with top-k."""
    monkeypatch.chdir(tmp_path)
    run, stored, _ = run_recipe(capsys, raw, "chat-bpe")
    assert stored["tokenizer"] == "bpe" and stored["tie_weights"] is True
    assert (stored["batch_size"], stored["gradient_accumulation_steps"]) == (2, 8)
    assert json.loads((run / "best" / "tokenizer.json").read_text())["kind"] == "bpe"
    assert "lm_head.weight" not in final_params(run)  # tied to wte
    monkeypatch.setattr("sys.stdin", io.StringIO("hi, how are you doing?\n/quit\n"))
    out = cli(capsys, "chat", "--ckpt", str(run / "best"), "--top-k", "20", "--seed", "0",
              "--max-new-tokens", "6")
    assert out.count("bot> ") == 1


@needs_gpt2
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_tinystories_gpt2_recipe(raw, capsys, tmp_path, monkeypatch, backend):
    """GPT-2 BPE padded to 50304, label smoothing, accumulation, warm restarts (and bf16
    autocast on the torch twin) -> sample."""
    if backend == "torch":
        pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    extra = ["--batch-size", "2", "--lr-restart-period", "2"]
    if backend == "torch":
        extra += ["--dtype", "bfloat16"]
    run, stored, text = run_recipe(capsys, raw, "tinystories-gpt2", *extra, backend=backend)
    assert "gpt2 vocab 50,257 padded to 50,304" in text  # what the header says is what runs
    assert stored_model(run / "best")["vocab_size"] == 50304
    assert stored["lr_schedule"] == "cosine-restarts" and stored["label_smoothing"] == 0.1
    assert stored["gradient_accumulation_steps"] == 4 and stored["pad_vocab_to"] == 64
    assert stored["dtype"] == ("bfloat16" if backend == "torch" else "float32")
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["val_loss"]) for r in log)
    text = cli(capsys, "sample", "--ckpt", str(run / "best"), "--prompt", "Once upon a time",
               "--top-k", "50", "--max-new-tokens", "8", backend=backend)
    assert text.strip()


@pytest.mark.parametrize("preset", ["shakespeare-char", "shakespeare-char-cpu"])
def test_shakespeare_char_recipe(raw, capsys, tmp_path, monkeypatch, preset):
    monkeypatch.chdir(tmp_path)
    run, stored, _ = run_recipe(capsys, raw, preset, "--batch-size", "4")
    assert stored["bias"] is False and stored["beta2"] == 0.99
    text = cli(capsys, "sample", "--ckpt", str(run / "best"), "--prompt", "First",
               "--max-new-tokens", "20")
    assert text.strip()


@needs_gpt2
def test_instruct_recipe(raw, capsys, tmp_path, monkeypatch):
    """GPT-2 BPE, response-only loss, early stopping, perplexity -> LoRA fine-tune -> chat."""
    monkeypatch.chdir(tmp_path)
    # the Alpaca prompt alone is ~40 tokens: a shorter block holds no response token, which is
    # refused before training (it used to end in a NaN loss blamed on the learning rate)
    code = main(["train", "--preset", "instruct", *TINY, "--block-size", "16", "--out", "short",
                 "--data-dir", str(raw)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: --block-size 16: no training example of ")
    assert "raise --block-size to at least" in err and not Path("short").exists()
    run, stored, _ = run_recipe(capsys, raw, "instruct", "--batch-size", "2", "--block-size",
                                "96", iters=6)
    assert stored["patience"] == 5 and stored["loss_on"] == "response"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(r["val_ppl"] == pytest.approx(math.exp(r["val_loss"])) for r in log)
    assert "perplexity" in cli(capsys, "eval", "--ckpt", str(run / "best"), "--data-dir",
                               str(raw), "--max-batches", "2")
    out = cli(capsys, "finetune", "--ckpt", str(run / "best"), "--dataset", "instruct",
              "--data-dir", str(raw), "--lora", "--lora-rank", "2", "--max-iters", "2",
              "--eval-interval", "2", "--eval-iters", "1", "--batch-size", "2", "--no-plot")
    merged = Path("out/finetune-instruct-lora-numpy/merged")
    assert "merged model" in out and (merged / "model.safetensors").is_file()
    monkeypatch.setattr("sys.stdin", io.StringIO("Add 1 and 2.\n/quit\n"))
    assert cli(capsys, "chat", "--ckpt", str(merged), "--greedy", "--max-new-tokens",
               "6").count("bot> ") == 1


def test_init_from_refuses_a_padding_the_checkpoint_does_not_have(citizens_chars, capsys, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli(capsys, "train", "--dataset", str(citizens_chars), *TINY, "--max-iters", "2", "--out", "a")
    code = main(["train", "--dataset", str(citizens_chars), *TINY, "--max-iters", "2", "--out", "b",
                 "--init-from", "a/best", "--pad-vocab-to", "64"])
    err = capsys.readouterr().err
    assert code == 1 and "--pad-vocab-to 64: --init-from a/best has vocab_size" in err
    assert not Path("b").exists()
