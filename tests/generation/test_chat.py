"""Chat: the format round trip, masked loss, padding, the ChatSession, the terminal chatbot.

The terminal chatbot is driven through stdin in a subprocess, in both twins. Replies of the
tiny random checkpoint are noise; what is checked is the protocol: streaming, end of turn,
commands, cropping, errors.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import twin_named

import torch_gpt
from numpy_gpt import GPT, GPTConfig
from numpy_gpt.cli.chat import chat_loop
from numpy_gpt.cli.main import main
from numpy_gpt.cli.sample import Sampler
from numpy_gpt.data.chat_format import (
    EOT,
    build_prompt,
    clean_reply,
    encode_alpaca_prompt,
    encode_prompt,
    encode_segments,
    format_alpaca,
    format_conversation,
    render,
)
from numpy_gpt.data.dataset import IGNORE_INDEX, TokenDataset, collate_examples
from numpy_gpt.generation.chat import ChatSession
from numpy_gpt.generation.sampling import SamplingConfig, SamplingError
from numpy_gpt.nn.checkpoint import checkpoint_fingerprint
from numpy_gpt.tokenizers import BPETokenizer, WordTokenizer

ROOT = Path(__file__).resolve().parents[2]
HISTORY = [{"role": "user", "content": "hi i am ada"}, {"role": "assistant", "content": "hello"},
           {"role": "user", "content": "what is 1 plus 2?"}]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------- the format


def test_prompt_is_the_training_format_up_to_the_reply(tiny_chat) -> None:
    """Template round trip: the chat prompt's ids are a prefix of the training example's ids,
    the rest is exactly the response (mask 1) and ends with end-of-turn."""
    tok = TokenDataset(tiny_chat[0]).tokenizer()
    reply = {"role": "assistant", "content": "3."}
    ids, mask = encode_segments(tok, format_conversation([*HISTORY, reply]))
    prompt = encode_prompt(tok, HISTORY)
    assert ids[:len(prompt)] == prompt
    assert ids[-1] == tok.eot_id and all(mask[len(prompt):])
    assert tok.decode(ids[len(prompt):-1]) == " 3."
    text = render(format_conversation([*HISTORY, reply]))
    assert text.startswith(build_prompt(HISTORY))
    assert clean_reply(text[len(build_prompt(HISTORY)):]) == "3."


def test_alpaca_prompt_is_the_training_format_up_to_the_output() -> None:
    tok = BPETokenizer.train("add the numbers: 2 and 3 is 5.", 270, special_tokens=[EOT])
    for inp in ("", "2 and 3"):
        ids, mask = encode_segments(tok, format_alpaca("add the numbers", inp, "5."))
        prompt = encode_alpaca_prompt(tok, "add the numbers", inp)
        assert ids[:len(prompt)] == prompt and not any(mask[:len(prompt)])
        assert tok.decode(ids[len(prompt):]) == "5.<|endoftext|>" and all(mask[len(prompt):])
        assert tok.decode(prompt).endswith("### Response:\n")


def test_masked_loss_ignores_prompt_targets(tiny_chat) -> None:
    """With loss_on='response' the loss (both twins) depends only on response targets:
    scrambling the prompt positions' targets changes nothing, one response target does."""
    ds = TokenDataset(tiny_chat[0])
    examples = [ds.example("train", k) for k in range(4)]
    x, y_resp = collate_examples(examples, 64, ds.pad_id, loss_on="response")
    _, y_all = collate_examples(examples, 64, ds.pad_id, loss_on="all")
    prompt = (y_resp == IGNORE_INDEX) & (y_all != IGNORE_INDEX)
    assert prompt.any() and (y_resp != IGNORE_INDEX).any()
    rng = np.random.default_rng(0)
    scrambled = np.where(prompt, rng.integers(0, ds.vocab_size, y_all.shape), y_all)
    y_scr = np.where(prompt, IGNORE_INDEX, scrambled)  # the response mask, reapplied
    changed = y_resp.copy()
    r = np.argwhere(y_resp != IGNORE_INDEX)[0]
    changed[tuple(r)] = (y_resp[tuple(r)] + 1) % ds.vocab_size

    config = GPTConfig(vocab_size=ds.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16)
    ref = GPT(config, dtype="float64", seed=0)
    model = torch_gpt.GPT.from_params(config, ref.params)
    for loss_of in (lambda y: ref.forward(x, y)[1],
                    lambda y: float(model(torch.from_numpy(x), torch.from_numpy(y))[1].detach())):
        assert loss_of(y_scr) == loss_of(y_resp)
        assert loss_of(changed) != loss_of(y_resp)
        assert loss_of(y_all) != loss_of(y_resp)
    logits = ref.forward(x)[0]  # the masked loss is the mean CE over response positions
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    keep = y_resp != IGNORE_INDEX
    manual = -np.mean(np.take_along_axis(logp, np.where(keep, y_resp, 0)[..., None], -1)[keep])
    assert ref.forward(x, y_resp)[1] == pytest.approx(manual, rel=1e-12)


def test_padding_is_never_attended(tiny_chat) -> None:
    """Right padding under causal attention: the real tokens' logits are the same with and
    without padding, whatever the pad id, in both twins."""
    ds = TokenDataset(tiny_chat[0])
    short, long = ds.example("train", 0), max((ds.example("train", k) for k in range(20)),
                                              key=lambda e: len(e[0]))
    n = len(short[0]) - 1
    assert len(long[0]) - 1 > n
    config = GPTConfig(vocab_size=ds.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=16)
    ref = GPT(config, dtype="float64", seed=1)
    model = torch_gpt.GPT.from_params(config, ref.params).eval()
    alone = collate_examples([short], 64, ds.pad_id)[0]
    assert alone.shape == (1, n)
    for pad in (ds.pad_id, 0, ds.vocab_size - 1):
        padded = collate_examples([short, long], 64, pad)[0]
        assert padded.shape[1] > n
        np.testing.assert_allclose(ref.forward(padded)[0][0, :n], ref.forward(alone)[0][0],
                                   rtol=1e-12, atol=1e-13)
        with torch.no_grad():
            t_pad = model(torch.from_numpy(padded))[0][0, :n]
            t_alone = model(torch.from_numpy(alone))[0][0]
        torch.testing.assert_close(t_pad, t_alone, rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------------- ChatSession


def scripted(tokens: list[int]):
    """A stand-in for a twin's generate(): yields `tokens`, honouring stop ids as generate
    does, and records the prompts it was given."""
    prompts: list[list[int]] = []

    def generate(model, ids, config, rng=None, **kwargs):
        prompts.append(list(ids))
        for t in tokens[:config.max_new_tokens]:
            if t in config.stop_ids:
                return
            yield t

    return generate, prompts


def session_with(tiny_chat, reply: str, tokenizer=None, block_size: int = 64, **settings
                 ) -> tuple[ChatSession, list[list[int]]]:
    """A ChatSession whose model 'generates' reply, end-of-turn, then more (never shown)."""
    tok = tokenizer or TokenDataset(tiny_chat[0]).tokenizer()
    generate, prompts = scripted(tok.encode(" " + reply) + [tok.eot_id] + tok.encode("ada"))
    model = SimpleNamespace(config=GPTConfig(vocab_size=tok.vocab_size, block_size=block_size))
    session = ChatSession(Sampler(model, tok, generate, {}, None), seed=0)
    session.update(**settings)
    return session, prompts


def test_reply_streams_and_stops_at_end_of_turn(tiny_chat) -> None:
    session, prompts = session_with(tiny_chat, "hello ada!")
    notices, chunks = session.send("hi i am ada")
    assert notices == [] and "".join(chunks) == "hello ada!"  # no leading space, no 2nd "ada"
    assert session.history == [{"role": "user", "content": "hi i am ada"},
                                {"role": "assistant", "content": "hello ada!"}]
    session.send("again")[1].close()  # a reply closed before any text still records the turn
    assert prompts[0] == encode_prompt(session.tokenizer, session.history[:1])
    session.reset()
    assert session.history == [] and session.context_start == 0


def test_alpaca_template_prompts_each_instruction_alone(tiny_chat) -> None:
    bpe = BPETokenizer.train("add 2 and 3, say ada", 262, special_tokens=[EOT])
    session, prompts = session_with(tiny_chat, "5.", tokenizer=bpe, block_size=1024)
    session.template = "alpaca"
    for m in ("add 2 and 3", "say ada"):
        assert "".join(session.send(m)[1]) == "5."
    assert prompts == [encode_alpaca_prompt(session.tokenizer, m)
                       for m in ("add 2 and 3", "say ada")]
    assert len(session.history) == 4  # shown, not prompted
    with pytest.raises(ValueError, match="unknown chat template"):
        ChatSession(session.sampler, template="chatml")


def test_history_is_cropped_oldest_turns_first(tiny_chat) -> None:
    session, prompts = session_with(tiny_chat, "hello again ada", max_new_tokens=20)
    budget = session.block_size - session.reserve
    for i in range(4):
        "".join(session.send(f"say {'abc' * (i + 1)}")[1])
    assert len(session.history) == 8
    assert all(len(p) <= budget for p in prompts)
    assert session.context_start > 0 and session.context_start % 2 == 0  # whole turns
    last = session.tokenizer.decode(prompts[-1])
    assert last.startswith("User: ") and last.endswith("say abcabcabcabc<|endoftext|>Assistant:")


def test_overlong_message_is_cropped_with_a_notice(tiny_chat) -> None:
    session, prompts = session_with(tiny_chat, "yes")
    notices, chunks = session.send("what is 1 plus 2? " * 40)
    "".join(chunks)
    assert len(notices) == 1 and "kept its last" in notices[0]
    assert len(prompts[0]) <= session.block_size - session.reserve
    assert session.history[0]["content"].endswith("plus 2?")
    with pytest.raises(ValueError, match="empty message"):
        session.send("   ")
    with pytest.raises(SamplingError, match="temperature"):
        session.update(temperature=0)
    assert session.config.temperature > 0


# ---------------------------------------------------------------------- the terminal chatbot


def chat(backend: str, ckpt: Path, stdin: str, *extra: str) -> subprocess.CompletedProcess:
    module = "numpy_gpt" if backend == "numpy" else "torch_gpt"
    return subprocess.run([sys.executable, "-m", module, "chat", "--ckpt", str(ckpt), "--seed",
                           "0", "--max-new-tokens", "12", *extra], input=stdin, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # tiny model


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_terminal_chat_through_stdin(tiny_chat, backend: str) -> None:
    stdin = ("hi i am ada\n\n/temp 0.5\n/temp -1\n/topk 5\n/topp off\n/nope\n"
             + "what is 3 plus 4? " * 30 + "\n/reset\nsay bob\n/quit\nnever read\n")
    p = chat(backend, tiny_chat[1], stdin)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.count("bot> ") == 3
    assert "(empty message ignored" in out and "[temperature = 0.5]" in out
    assert "error: /temp -1: give a number > 0" in out and "[top_k = 5]" in out
    assert "[top_p = off]" in out and "unknown command /nope" in out
    assert "kept its last" in out and "[conversation reset]" in out
    assert "Traceback" not in p.stderr


def test_both_twins_give_the_same_greedy_replies(tiny_chat) -> None:
    replies = []
    for backend in ("numpy", "torch"):
        session = ChatSession.load(twin_named(backend), tiny_chat[1], config=SamplingConfig(
            greedy=True, max_new_tokens=12))
        replies.append(["".join(session.send(m)[1]) for m in ("hi i am ada", "say bob")])
    assert replies[0] == replies[1]


def test_reply_ends_at_end_of_turn_with_a_real_model(tmp_path, tiny_chat) -> None:
    """A model whose every next token is end-of-turn: the reply is empty, and said so."""
    tok = TokenDataset(tiny_chat[0]).tokenizer()
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2,
                       n_embd=8, tie_weights=False)
    model = GPT(config, seed=0)
    model.params["transformer.ln_f.weight"][:] = 0.0  # ln_f output = its bias, for any input
    model.params["transformer.ln_f.bias"][:] = 1.0
    model.params["lm_head.weight"][tok.eot_id] = 5.0
    model.save(tmp_path / "eot", tokenizer=tok)
    p = chat("numpy", tmp_path / "eot", "hello\n")
    assert p.returncode == 0 and "bot> (no reply: the model ended its turn at once)" in p.stdout


def test_bad_checkpoint_is_one_line_exit_1(tmp_path) -> None:
    p = chat("numpy", tmp_path / "missing", "hi\n")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("error: no checkpoint folder at") and p.stderr.count("\n") == 1


def test_a_model_without_end_of_turn_says_what_to_do_instead(tmp_path) -> None:
    """A model trained on plain text (a char tokenizer without <|endoftext|>, as Shakespeare's):
    one line saying why chat cannot work and what to run instead."""
    from numpy_gpt.tokenizers import CharTokenizer

    tok = CharTokenizer.train("to be or not to be")
    assert tok.eot_id is None
    GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=8)
        ).save(tmp_path / "text", tokenizer=tok)
    p = chat("numpy", tmp_path / "text", "hi\n")
    assert p.returncode == 1 and p.stdout == "" and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("error: the checkpoint's char tokenizer has no end-of-turn token")
    assert "sample --ckpt DIR --prompt TEXT" in p.stderr
    assert "train --preset dialogue-word, chat-bpe or instruct" in p.stderr


# ---------------------------------------------------------------------- what chat says it does


def run_commands(session: ChatSession, lines: list[str]) -> list[str]:
    out = io.StringIO()
    chat_loop(session, io.StringIO("".join(line + "\n" for line in lines)), out, False)
    return out.getvalue().splitlines()


def test_commands_say_what_a_value_is_and_what_takes_effect(tiny_chat) -> None:
    """Bad values: one line naming the command and what a value is (no Python float/int error,
    no --greedy, which is a command-line flag); /greedy toggles greedy decoding in the chat, and
    settings without effect under it say so."""
    session, _ = session_with(tiny_chat, "yes")
    before = session.config
    temp = "give a number > 0 (lower is more predictable); for always the most likely token: "
    assert run_commands(session, ["/temp abc", "/temp 0", "/temp nan", "/topk x", "/topk -2",
                                  "/topp 1.5", "/rep abc", "/max 0", "/max 2.5", "/greedy maybe"]
                        ) == [
        f"error: /temp abc: {temp}/greedy on", f"error: /temp 0: {temp}/greedy on",
        f"error: /temp nan: {temp}/greedy on",
        "error: /topk x: give a whole number >= 1, or 0 or off for all tokens",
        "error: /topk -2: give a whole number >= 1, or 0 or off for all tokens",
        "error: /topp 1.5: give a number with 0 < P <= 1, or off (1 is off too)",
        "error: /rep abc: give a number > 0 (1 is off, > 1 discourages repeats)",
        "error: /max 0: give a whole number >= 1 (tokens)",
        "error: /max 2.5: give a whole number >= 1 (tokens)",
        "error: /greedy maybe: give on or off"]
    assert session.config == before  # nothing changed
    assert run_commands(session, ["/greedy on", "/temp 0.5", "/topp 0.9", "/rep 1.2",
                                  "/greedy", "/greedy off", "/topk 1", "/temp 0.7", "/temp"]
                        ) == [
        "[greedy = on: always the most likely token (/greedy off to sample)]",
        "[temperature = 0.5 (no effect while /greedy is on)]",
        "[top_p = 0.9 (no effect while /greedy is on)]",
        "[repetition_penalty = 1.2]",
        "/greedy: greedy = on: always the most likely token (/greedy off to sample); give a "
        "value to change it",
        "[greedy = off]", "[top_k = 1]",
        "[temperature = 0.7 (no effect while top_k = 1: always the most likely token)]",
        "/temp: temperature = 0.7 (no effect while top_k = 1: always the most likely token); "
        "give a value to change it"]
    session.update(top_k=None, greedy=True)
    assert session.config.is_greedy
    with pytest.raises(SamplingError, match="max_new_tokens >= 1, got 0"):
        session.update(max_new_tokens=0)


def test_unknown_words_are_named_once(tiny_chat) -> None:
    """A word tokenizer reads unknown words as <UNK>: the first message with each says so."""
    tok = WordTokenizer.train("user: hello there, friend! assistant: ok my friend.")
    session, prompts = session_with(tiny_chat, "ok", tokenizer=tok)
    notices, chunks = session.send("Hello Zebra, my friend")
    "".join(chunks)
    assert notices == ["not in the model's vocabulary, so read as <UNK>: 'zebra'"]
    assert prompts[0].count(tok.special_tokens["<UNK>"]) == 1
    assert session.send("zebra again and QUUX")[0] == [
        "not in the model's vocabulary, so read as <UNK>: 'again', 'and', 'quux'"]
    assert session.send("hello friend")[0] == []
    assert run_commands(session, ["my new friend"])[0] == (
        "[not in the model's vocabulary, so read as <UNK>: 'new']")


def chat_main(monkeypatch, capsys, args: list[str], stdin: str = "",
              backend: str = "numpy") -> tuple[int, str, str]:
    """`chat` in this process (fast): (exit status, stdout, stderr)."""
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["chat", "--seed", "0", "--max-new-tokens", "4", *args], twin=twin_named(backend))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(*folders: Path) -> dict[Path, bytes]:
    return {f: f.read_bytes() for d in folders for f in sorted(d.rglob("*")) if f.is_file()}


HEADER = "; /help for commands, /quit to leave\n"


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_adapter_prompt_format_is_the_recorded_one(tiny_lora, monkeypatch, capsys,
                                                   backend: str) -> None:
    """Base + an adapter trained on Alpaca instructions chats in the alpaca format (the base
    records none), and says where the format comes from; --template still overrides."""
    base, alpaca = tiny_lora["base"], tiny_lora["alpaca"]
    code, out, err = chat_main(monkeypatch, capsys, ["--ckpt", str(base), "--adapter",
                                                     str(alpaca)], backend=backend)
    assert (code, err) == (0, "")
    assert out == (f"chatting with {base} + {alpaca} ({backend} twin, alpaca format as "
                   f"recorded by the adapter, context 64 tokens){HEADER}")
    code, out, _ = chat_main(monkeypatch, capsys, ["--ckpt", str(base), "--adapter",
                                                   str(alpaca), "--template", "chat"])
    assert code == 0 and "(numpy twin, chat format from --template, context" in out
    session = ChatSession.load(twin_named(backend), base, adapter=alpaca)
    assert (session.template, session.template_source) == ("alpaca",
                                                           "as recorded by the adapter")
    assert session.notices == []


def refusal(monkeypatch, capsys, ckpt: Path, adapter: Path, backend: str) -> str:
    """stderr of a chat that must be refused: exit status 1, nothing on stdout, one line on
    stderr, no file of the checkpoint or the adapter changed."""
    before = snapshot(ckpt, adapter)
    code, out, err = chat_main(monkeypatch, capsys, ["--ckpt", str(ckpt), "--adapter",
                                                     str(adapter)], "hi\n", backend)
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert snapshot(ckpt, adapter) == before
    return err


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_adapter_on_a_model_it_is_merged_into_is_refused(tiny_lora, monkeypatch, capsys,
                                                         backend: str) -> None:
    base, alpaca, merged = tiny_lora["base"], tiny_lora["alpaca"], tiny_lora["merged"]
    assert refusal(monkeypatch, capsys, merged, alpaca, backend) == (
        f"error: the adapter {alpaca} is already merged into {merged} (its config.json lists "
        f"it under merged_adapters): use {merged} without the adapter, or put the adapter on "
        f"the base it was trained on ({base})\n")
    code, out, _ = chat_main(monkeypatch, capsys, ["--ckpt", str(merged)], backend=backend)
    assert code == 0 and "alpaca format as recorded by the checkpoint" in out


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_adapter_on_another_base_is_refused(tiny_lora, monkeypatch, capsys,
                                            backend: str) -> None:
    base, alpaca, other = tiny_lora["base"], tiny_lora["alpaca"], tiny_lora["other"]
    want, got = checkpoint_fingerprint(base)[:12], checkpoint_fingerprint(other)[:12]
    assert refusal(monkeypatch, capsys, other, alpaca, backend) == (
        f"error: the adapter {alpaca} was trained on another base than {other} (weights "
        f"fingerprint {want}, {other} has {got}): put it on the checkpoint it was fine-tuned "
        f"from ({base})\n")


def test_old_adapter_says_what_is_assumed(tiny_lora, monkeypatch, capsys) -> None:
    """An adapter saved before adapters recorded base and format: used, with one line."""
    base, legacy = tiny_lora["base"], tiny_lora["legacy"]
    code, out, err = chat_main(monkeypatch, capsys, ["--ckpt", str(base), "--adapter",
                                                     str(legacy)], "hi\n")
    assert (code, err) == (0, "")
    note = (f"note: the adapter {legacy} does not record the base it was trained on (saved "
            f"before adapters recorded it): assuming it was trained on {base}")
    lines = out.splitlines()
    assert lines[0] == f"{note}, in the chat format (by default)"
    assert lines[1].startswith(f"chatting with {base} + {legacy} (numpy twin, chat format by "
                               "default, context 64 tokens)")
    assert lines[2].startswith("bot> ")
    code, out, _ = chat_main(monkeypatch, capsys, ["--ckpt", str(base), "--adapter",
                                                   str(legacy), "--template", "alpaca"])
    assert code == 0 and out.splitlines()[0] == note  # the format was chosen, not assumed


@pytest.mark.parametrize("flags, message", [
    (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1 in a chat, got 0"),
    (["--top-k", "-1"], "--top-k must be >= 0 (0 = all tokens), got -1"),
    (["--seed", "-3"], "--seed must be >= 0, got -3"),
])
def test_chat_flags_say_what_a_value_is(tiny_chat, monkeypatch, capsys, flags: list[str],
                                        message: str) -> None:
    """A reply of 0 tokens would always read "the model ended its turn at once"; --top-k
    documents 0 as all tokens; a negative seed was NumPy's "expected non-negative integer"."""
    code, out, err = chat_main(monkeypatch, capsys, ["--ckpt", str(tiny_chat[1]), *flags],
                               "hi\n")
    assert (code, out, err) == (1, "", f"error: {message}\n")
