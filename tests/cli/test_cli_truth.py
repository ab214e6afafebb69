"""The command line never does something other than what it says (issue 13).

Each refusal is one `error: ...` line, a non-zero exit, no traceback, and nothing written or
changed; what may change is really applied. Runs are tiny (1 layer, 16 wide, a few steps).
"""

import argparse
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CITIZENS as TEXT
from conftest import twin_named
from tiny_train import tiny

from numpy_gpt.cli.main import main
from numpy_gpt.data.dataset import TokenDataset
from numpy_gpt.data.prepare import prepare
from numpy_gpt.training.numpy_backend import numpy_backend
from numpy_gpt.training.train import train

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--eval-iters", "1", "--sample-tokens", "0", "--no-plot"]


def run_cli(*args: str, cwd: Path, module: str = "numpy_gpt") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


def one_line_error(done: subprocess.CompletedProcess, message: str, code: int = 1) -> None:
    assert done.returncode == code, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder with its bytes: "nothing changed" is an equal snapshot."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- case 3: no abbreviated flags, on any parser ---------------------------------------------
PARSER_CALLS = ("ArgumentParser", "_Parser", "add_parser")


def parser_calls_without_allow_abbrev() -> list[str]:
    """Every parser-building call in the project's sources that lacks allow_abbrev=False."""
    missing = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", "out") or any(p.startswith(".") for p in rel.parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            if name not in PARSER_CALLS:
                continue
            ok = any(k.arg == "allow_abbrev" and isinstance(k.value, ast.Constant)
                     and k.value.value is False for k in node.keywords)
            if not ok:
                missing.append(f"{rel}:{node.lineno}")
    return missing


def walk(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from walk(sub)


def test_every_parser_refuses_abbreviated_flags():
    assert parser_calls_without_allow_abbrev() == []
    from numpy_gpt.cli.main import build_parser

    builders = [lambda: build_parser(twin_named("numpy")),
                lambda: build_parser(twin_named("torch"))]
    for module in ("parity.cli", "bench.cli"):
        mod = pytest.importorskip(module)
        builders.append(mod.build_parser)
    parsers = [p for b in builders for p in walk(b())]
    assert len(parsers) > 10
    assert [p.prog for p in parsers if p.allow_abbrev] == []


def test_train_lr_is_not_lr_decay_iters(tmp_path):
    done = run_cli("train", "--lr", "1000", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 2 and "unrecognized arguments: --lr 1000" in done.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "out").exists()


# ---- helpers for the in-process runs ----------------------------------------------------------
def cli(capsys, *args: str, backend: str = "numpy") -> tuple[int, str, str]:
    code = main(list(args), twin=twin_named(backend))
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *args: str, backend: str = "numpy") -> str:
    """Run a command that must be refused: exit 1 and one `error: ...` line; returns it."""
    code, _, err = cli(capsys, *args, backend=backend)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def run(citizens_chars, tmp_path, monkeypatch) -> Path:
    """A finished 4-step run of a 16-wide model in tmp_path/run (cwd: tmp_path)."""
    monkeypatch.chdir(tmp_path)
    train(tiny(citizens_chars, max_iters=4, eval_interval=2, eval_iters=1, dropout=0.0,
               gradient_accumulation_steps=1), TokenDataset(citizens_chars), tmp_path / "run",
          numpy_backend)
    return tmp_path / "run"


# ---- case 1: --resume applies what may change and refuses the rest ---------------------------
def test_resume_refuses_a_new_model_shape_and_changes_nothing(run, capsys):
    before = snapshot(run)
    line = refused(capsys, "train", "--resume", "--out", str(run), "--n-embd", "256")
    assert line.startswith(f"error: --n-embd 256: cannot change on --resume (the run in {run} "
                           "has n_embd=16); drop it, or start a new run with --out NEWDIR. On "
                           "resume only these may change: --max-iters, --lr-decay-iters")
    assert snapshot(run) == before
    # the same value as stored is no change, and not refused (4 iters: nothing left to do)
    assert cli(capsys, "train", "--resume", "--out", str(run), "--n-embd", "16")[0] == 0


def test_resume_refuses_a_preset_or_config(run, capsys, tmp_path):
    before = snapshot(run)
    line = refused(capsys, "train", "--resume", "--out", str(run), "--preset", "dialogue")
    assert line.startswith(f"error: --preset dialogue cannot be used with --resume: a resumed "
                           f"run keeps the settings stored in {run / 'last'}; resume with "
                           f"--resume --out {run} and only the flags that may change")
    (tmp_path / "c.json").write_text('{"max_iters": 8}')
    assert "--config" in refused(capsys, "train", "--resume", "--out", str(run),
                                 "--config", str(tmp_path / "c.json"))
    assert snapshot(run) == before


def test_resume_applies_the_settings_that_may_change(run, capsys):
    code, out, _ = cli(capsys, "train", "--resume", "--out", str(run), "--max-iters", "6",
                       "--eval-interval", "3", "--no-plot")
    assert code == 0
    assert f"resuming {run / 'last'} from iteration 4 of 6 (" in out
    state = json.loads((run / "last" / "trainer_state.json").read_text())
    assert state["iter"] == 6 and state["train_config"]["max_iters"] == 6
    assert state["train_config"]["eval_interval"] == 3
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [0, 2, 4, 6]
    # one elapsed time: the final line's total is the log's (both count earlier sessions)
    final = next(x for x in out.splitlines() if x.startswith("done: iter 6"))
    total = float(final.split(", ")[2].split(" s of training")[0])
    assert abs(total - log[-1]["elapsed_s"]) < 0.5 and "of them in this session" in final
    assert "--max-iters 2: the run in" in refused(capsys, "train", "--resume", "--out",
                                                  str(run), "--max-iters", "2")


def test_help_lists_what_may_change_on_resume(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "only these may change: --max-iters, --lr-decay-iters, --min-lr" in text


# ---- case 2: --init-from trains the checkpoint's model or refuses ----------------------------
def test_init_from_another_tokenizer_is_refused(run, capsys, tmp_path):
    (tmp_path / "words.txt").write_text("the cat sat on the mat and the dog ran away.\n" * 50)
    words = prepare(tmp_path / "words.txt", tmp_path / "words", fmt="text", tokenizer="word",
                    name="words")
    line = refused(capsys, "train", "--dataset", str(words), "--init-from",
                   str(run / "last"), "--out", str(tmp_path / "x"), *TINY)
    assert line.startswith(f"error: --init-from {run / 'last'} has a char tokenizer with "
                           f"vocab_size 33 but the dataset {words} is encoded with a word "
                           "tokenizer with vocab_size")
    assert not (tmp_path / "x").exists()


def test_init_from_uses_and_prints_the_checkpoint_shape(run, citizens_chars, capsys, tmp_path):
    # no shape flags: the default preset says 4L/4H/128d, the checkpoint is 1L/2H/16d
    code, out, _ = cli(capsys, "train", "--dataset", str(citizens_chars), "--init-from",
                       str(run / "last"), "--out", str(tmp_path / "y"), "--max-iters", "2",
                       "--eval-iters", "1", "--batch-size", "4", "--sample-tokens", "0",
                       "--no-plot")
    assert code == 0 and "(1L/2H/16d, char vocab 33, T=16," in out
    stored = json.loads((tmp_path / "y" / "last" / "trainer_state.json").read_text())
    assert {k: stored["train_config"][k] for k in ("n_layer", "n_head", "n_embd")} == {
        "n_layer": 1, "n_head": 2, "n_embd": 16}
    line = refused(capsys, "train", "--dataset", str(citizens_chars), "--init-from",
                   str(run / "last"), "--n-embd", "32", "--out", str(tmp_path / "z"))
    assert line == (f"error: --n-embd 32: --init-from {run / 'last'} is a model with n_embd=16; "
                    "drop the setting (the checkpoint's shape is used) or train from scratch "
                    "without --init-from")
    (tmp_path / "c.json").write_text('{"n_layer": 3}')  # a --config file asks as a flag does
    assert f"error: --n-layer 3 (from --config {tmp_path / 'c.json'}): --init-from" in refused(
        capsys, "train", "--dataset", str(citizens_chars), "--init-from", str(run / "last"),
        "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "z"))
    # an explicit --preset asks for its shape too (the default preset, unnamed, does not)
    assert refused(capsys, "train", "--dataset", str(citizens_chars), "--init-from",
                   str(run / "last"), "--preset", "shakespeare-char-cpu", "--out",
                   str(tmp_path / "z")).startswith(
        "error: --n-layer 4 (from --preset shakespeare-char-cpu), --n-head 4 (from --preset "
        "shakespeare-char-cpu), --n-embd 128 (from --preset shakespeare-char-cpu), --no-bias "
        "(from --preset shakespeare-char-cpu): --init-from")
    assert not (tmp_path / "z").exists()


# ---- case 4: prepared data keyed by tokenizer and options; train --tokenizer picks one ---------
@pytest.fixture
def raw(tmp_path, monkeypatch) -> Path:
    """A data dir with a small tinyshakespeare/input.txt; cwd is tmp_path (out/ goes there)."""
    (tmp_path / "raw" / "tinyshakespeare").mkdir(parents=True)
    (tmp_path / "raw" / "tinyshakespeare" / "input.txt").write_text(TEXT)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "raw"


def test_prepared_folders_are_keyed_and_train_tokenizer_picks_one(raw, capsys, tmp_path):
    d = ["--data-dir", str(raw)]
    assert cli(capsys, "prepare", "shakespeare_char", *d)[0] == 0
    char = tmp_path / "out" / "data" / "shakespeare_char-char"
    before = snapshot(char)
    code, out, _ = cli(capsys, "prepare", "shakespeare_char", "--tokenizer", "word", *d)
    assert code == 0 and out.startswith("out/data/shakespeare_char-word: word tokenizer")
    assert cli(capsys, "prepare", "shakespeare_char", "--tokenizer", "word", "--vocab-size",
               "20", "--seed", "7", *d)[1].startswith("out/data/shakespeare_char-word-v20-seed7:")
    code, out, _ = cli(capsys, "train", "--dataset", "shakespeare_char", "--tokenizer", "word",
                       *d, *TINY, "--max-iters", "2", "--out", "r")
    assert code == 0 and "on out/data/shakespeare_char-word (1L/2H/16d, word vocab" in out
    state = json.loads((tmp_path / "r" / "last" / "trainer_state.json").read_text())
    assert state["train_config"]["tokenizer"] == "word"
    assert snapshot(char) == before  # the char preparation was not touched
    line = refused(capsys, "train", "--dataset", str(char), "--tokenizer", "word", "--out", "q")
    assert line.startswith(f"error: --tokenizer word: {char} is prepared with the char tokenizer")
    # files given with --input are keyed the same way; a named dataset's name is not theirs
    (tmp_path / "chats.txt").write_text(TEXT)
    for kind in ("char", "word"):
        code, out, _ = cli(capsys, "prepare", "--input", "chats.txt", "--tokenizer", kind)
        assert code == 0 and out.startswith(f"out/data/chats-{kind}: {kind} tokenizer")
    (tmp_path / "dialogue.txt").write_text(TEXT)
    assert refused(capsys, "prepare", "--input", "dialogue.txt", "--tokenizer", "char") == (
        "error: --input dialogue.txt: 'dialogue' is the name of a named dataset, whose "
        "preparations live in out/data/dialogue-*; pass --name NAME or --out DIR")


# ---- case 6: sizes that cannot fit, missing folders, an authoritative --data-dir --------------
def test_a_size_that_cannot_fit_in_memory_is_refused_before_work(citizens_chars, capsys, tmp_path):
    line = refused(capsys, "train", "--dataset", str(citizens_chars), "--block-size", "100000",
                   "--out", str(tmp_path / "o"))
    assert line.startswith("error: this run needs about ") and " TiB of memory per training " \
        "step (--block-size 100000, --batch-size 12, 4 layers of 128 wide, float32;" in line
    assert line.endswith("; lower --block-size or --batch-size")
    assert not (tmp_path / "o").exists()
    from numpy_gpt.training.config import TrainConfig
    from numpy_gpt.training.plan import check_memory

    check_memory(TrainConfig(), 65, ram=2**30)  # the default run fits in 1 GiB


def test_a_hopeless_size_prepares_no_data_either(raw, capsys, tmp_path):
    line = refused(capsys, "train", "--data-dir", str(raw), "--block-size", "100000")
    assert line.startswith("error: this run needs about ")
    assert not (tmp_path / "out").exists()


def test_missing_dataset_folder_and_data_dir_say_so(raw, capsys, tmp_path, monkeypatch):
    line = refused(capsys, "train", "--dataset", "out/data/nonexistent", "--out", "o")
    assert line.startswith("error: dataset folder out/data/nonexistent does not exist; prepare "
                           "it with python -m numpy_gpt prepare")
    assert "unknown dataset 'nope'" in refused(capsys, "train", "--dataset", "nope")
    line = refused(capsys, "train", "--data-dir", str(tmp_path / "nowhere"), "--out", "o")
    assert line.startswith(f"error: --data-dir {tmp_path / 'nowhere'} does not exist")
    # an explicit --data-dir is the only place looked in, even when $GPT_DATA_DIR has the file
    monkeypatch.setenv("GPT_DATA_DIR", str(raw))
    (tmp_path / "empty").mkdir()
    line = refused(capsys, "prepare", "shakespeare", "--data-dir", str(tmp_path / "empty"))
    assert line.startswith(f"error: tinyshakespeare/input.txt is not in --data-dir "
                           f"{tmp_path / 'empty'} (an explicit --data-dir is the only folder "
                           "searched)") or "downloading it failed" in line
    assert not (tmp_path / "o").exists() and not (tmp_path / "out").exists()


# ---- case 7: slow autocast on the CPU, duration estimate, progress when piped -----------------
def test_piped_progress_prints_a_line_every_n_seconds_and_an_estimate(capsys):
    from numpy_gpt.training.progress import ConsoleReporter

    now = [0.0]
    rep = ConsoleReporter(10, heartbeat_s=30, clock=lambda: now[0], tty=False)
    rep.start(total=1000, initial=0)
    for it in range(1, 41):
        now[0] += 2.0  # 2 s per step: 1000 steps is a long run
        rep.step(it, 2.5, 1e-3, 1234.0)
    rep.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("estimated time left: 33 min for 989 more iterations (2 s/iter over the "
                        "last 10; evaluations come on top)")
    beats = [x for x in lines[1:] if x.startswith("iter ")]
    assert beats[0] == "iter 15/1,000: loss 2.5000, lr 1.00e-03, 1,234 tok/s, ~33 min left"
    assert len(beats) == 2  # at 30 s and 60 s of the 80 s


def test_torch_half_dtype_on_cpu_warns_with_the_measured_factor(citizens_chars, capsys, tmp_path):
    pytest.importorskip("torch")
    code, _, err = cli(capsys, "train", "--dataset", str(citizens_chars), *TINY, "--max-iters", "1",
                       "--eval-interval", "1", "--dtype", "bfloat16", "--device", "cpu",
                       "--out", str(tmp_path / "bf"), backend="torch")
    assert code == 0
    warnings = [x for x in err.splitlines() if x.startswith("warning: --dtype bfloat16")]
    assert len(warnings) == 1
    assert "on the CPU: a training step of this model measured " in warnings[0]
    assert "x the time of float32; " in warnings[0]


# ---- case 8: resume from any folder a training command wrote ---------------------------------
def test_resume_of_fine_tunes(tiny_chat, capsys, tmp_path, monkeypatch):
    folder, ckpt = tiny_chat
    monkeypatch.chdir(tmp_path)
    common = ["--ckpt", str(ckpt), "--dataset", str(folder), "--lora", "--lora-rank", "2",
              "--eval-interval", "2", "--eval-iters", "1", "--batch-size", "2", "--no-plot"]
    assert cli(capsys, "finetune", *common, "--max-iters", "2")[0] == 0
    out_dir = Path("out") / f"finetune-{folder.name}-lora-numpy"
    before = snapshot(out_dir)
    line = refused(capsys, "train", "--resume", "--out", str(out_dir))
    assert line == (f"error: {out_dir} holds a LoRA fine-tuning run, which `train` cannot "
                    f"continue; continue it with: finetune --resume --out {out_dir}")
    assert "--lora-rank 4: cannot change on --resume" in refused(
        capsys, "finetune", "--resume", "--out", str(out_dir), "--lora-rank", "4")
    assert refused(capsys, "finetune", "--resume").startswith(
        "error: finetune --resume needs --out DIR, or the --dataset (and --lora)")
    assert refused(capsys, "finetune", "--resume", "--out", str(out_dir), "--dataset",
                   "instruct").startswith("error: --dataset instruct: the run in ")
    assert refused(capsys, "train", "--resume", "--out", "elsewhere") == (
        "error: --resume: there is no run in elsewhere (no elsewhere/last); pass --out DIR, "
        "the folder of the run to continue")
    assert snapshot(out_dir) == before
    # no --out: the default folder of --dataset and --lora, as the first run chose it
    code, out, _ = cli(capsys, "finetune", "--resume", "--dataset", str(folder), "--lora",
                       "--max-iters", "4", "--no-plot")
    assert code == 0 and f"resuming {out_dir / 'last'} from iteration 2 of 4 (" in out
    assert json.loads((out_dir / "last" / "trainer_state.json").read_text())["iter"] == 4


def test_train_resume_continues_a_full_fine_tune_of_a_named_dataset(capsys, tmp_path,
                                                                   monkeypatch):
    """The run records the folder it trained on (not the name given), so `train --resume`
    reads the same data with the same tokenizer instead of a GPT-2 preparation."""
    from numpy_gpt import GPT, GPTConfig
    from numpy_gpt.data.chat_format import EOT
    from numpy_gpt.tokenizers import BPETokenizer

    monkeypatch.chdir(tmp_path)
    examples = [{"instruction": f"add {a} and {b}", "input": "", "output": f"{a + b}."}
                for a in range(5) for b in range(4)]
    (tmp_path / "raw" / "instruct").mkdir(parents=True)
    (tmp_path / "raw" / "instruct" / "instruction-data.json").write_text(json.dumps(examples))
    tok = BPETokenizer.train(json.dumps(examples), 270, special_tokens=[EOT])
    GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=1, n_head=2, n_embd=16),
        seed=0).save(tmp_path / "base", tokenizer=tok)
    common = ["--eval-interval", "2", "--eval-iters", "1", "--batch-size", "2", "--no-plot"]
    code, _, err = cli(capsys, "finetune", "--ckpt", "base", "--dataset", "instruct",
                       "--data-dir", "raw", "--max-iters", "2", *common)
    assert code == 0, err
    run_dir = Path("out") / "finetune-instruct-full-numpy"
    code, out, err = cli(capsys, "train", "--resume", "--out", str(run_dir), "--max-iters", "4",
                         "--no-plot")
    assert code == 0, err
    assert f"resuming {run_dir / 'last'} from iteration 2 of 4 (" in out
    state = json.loads((run_dir / "last" / "trainer_state.json").read_text())
    assert state["iter"] == 4
    assert state["train_config"]["dataset"].startswith("out/data/instruct-bpe-")


# ---- issue 28: what the header says, and what a resume keeps --------------------------------
def test_header_names_the_preset_schedule_and_time_also_on_resume(citizens_chars, capsys,
                                                                   tmp_path, monkeypatch):
    """One decay rule for every preset (the cosine ends at --max-iters unless --lr-decay-iters
    says otherwise), printed and stored, so a resume with more iterations keeps it; the resume
    header names the preset as the first run did; the time of a step and of an evaluation is
    estimated before the first evaluation runs; a too-small --max-iters says what to pass."""
    from numpy_gpt.training.config import PRESETS

    assert not [name for name, p in PRESETS.items() if "lr_decay_iters" in p]
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    code, out, _ = cli(capsys, "train", "--preset", "shakespeare-char-cpu", "--dataset",
                       str(citizens_chars), *TINY, "--max-iters", "20", "--eval-interval", "10",
                       "--warmup-iters", "2", "--out", str(run))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("numpy twin: training shakespeare-char-cpu on ")
    assert "lr: warmup 2 iters to 0.001, cosine down to 0.0001 at iter 20 (--lr-decay-iters; " \
           "default --max-iters), then flat" in lines
    estimate = next(i for i, x in enumerate(lines) if x.startswith("time estimate: ~"))
    assert estimate < next(i for i, x in enumerate(lines) if x.startswith("iter      0:"))
    assert "an evaluation (1 batch x 2 splits), ~" in lines[estimate]
    assert "for 20 steps and 3 evaluations (from one timed forward of " in lines[estimate]
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["lr"] == pytest.approx(1e-4)  # at min_lr at max_iters, not still ~1e-3
    code, out, _ = cli(capsys, "train", "--resume", "--out", str(run), "--max-iters", "30",
                       "--eval-interval", "10", "--no-plot")
    assert code == 0 and out.startswith("numpy twin: training shakespeare-char-cpu on ")
    assert "cosine down to 0.0001 at iter 20" in out  # the stored decay point, kept
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [0, 10, 20, 30] and log[-1]["lr"] == pytest.approx(1e-4)
    line = refused(capsys, "train", "--resume", "--out", str(run), "--max-iters", "25")
    assert line == (f"error: --max-iters 25: the run in {run} is already at iteration 30; to "
                    "train further, pass a --max-iters above 30")
