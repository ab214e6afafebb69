"""`python -m numpy_gpt chat` / `python -m torch_gpt chat`: a chatbot in the terminal.

    python -m numpy_gpt chat --ckpt out/finetune-instruct-lora-numpy/merged
    python -m torch_gpt chat --ckpt BASE --adapter out/finetune-instruct-lora-torch/adapter
    printf 'hi\\n/temp 0.5\\nwhat is 2 plus 2?\\n' | python -m numpy_gpt chat --ckpt DIR

Type a message and the reply streams as it is generated, ending at the end-of-turn token.
Commands: /reset, /temp X, /topk K, /topp P, /rep R, /max N, /greedy on|off, /help, /quit.
A bad value is one line `error: /cmd VALUE: ...` saying what a value is, and changes nothing; a
setting that has no effect while /greedy is on says so. Works with stdin a pipe (one message per
line, ends at end of input). The conversation logic is numpy_gpt/generation/chat.py; this module
only reads lines and prints (STYLE.md L3).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TextIO

from ..data.chat_format import TEMPLATES
from ..generation.chat import CHAT_DEFAULTS, CHOSEN, ChatSession
from ..generation.sampling import SamplingConfig, SamplingError
from ..twin import Twin

HELP = """commands:
  /reset      forget the conversation
  /temp X     temperature (> 0; lower is more predictable)
  /topk K     sample from the K most likely tokens (0 or off: all)
  /topp P     nucleus sampling, 0 < P <= 1 (1 or off: all)
  /rep R      repetition penalty (1 = off, > 1 discourages repeats)
  /max N      longest reply in tokens (>= 1)
  /greedy on  always the most likely token (/temp, /topk, /topp then have no effect);
              /greedy off to sample again
  /help       this text
  /quit       leave (so does /exit, end of input, or Ctrl-D)
a command without a value shows the current one"""
OFF = ("off", "none")


def _top_k(v: str) -> int | None:
    return None if v.lower() in (*OFF, "0") else int(v)


def _top_p(v: str) -> float | None:
    return None if v.lower() in OFF else _off_at_one(float(v))


def _on_off(v: str) -> bool:
    if v.lower() not in ("on", "off"):
        raise ValueError(v)
    return v.lower() == "on"


# command -> (SamplingConfig field, parse the value, what a valid value is)
SETTERS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "/temp": ("temperature", float, "a number > 0 (lower is more predictable); for always "
                                    "the most likely token: /greedy on"),
    "/topk": ("top_k", _top_k, "a whole number >= 1, or 0 or off for all tokens"),
    "/topp": ("top_p", _top_p, "a number with 0 < P <= 1, or off (1 is off too)"),
    "/rep": ("repetition_penalty", float, "a number > 0 (1 is off, > 1 discourages repeats)"),
    "/max": ("max_new_tokens", int, "a whole number >= 1 (tokens)"),
    "/greedy": ("greedy", _on_off, "on or off"),
}
NO_EFFECT_WHEN_GREEDY = ("temperature", "top_k", "top_p")


def add_args(parser: argparse.ArgumentParser, twin: Twin) -> None:
    d = CHAT_DEFAULTS
    parser.add_argument("--ckpt", required=True, metavar="DIR",
                        help="checkpoint folder (config.json, model.safetensors, tokenizer.json)")
    parser.add_argument("--adapter", metavar="DIR",
                        help="a LoRA adapter folder (from finetune --lora) to apply on top; "
                             "refused on a checkpoint other than its base, or one it is "
                             "already merged into")
    parser.add_argument("--template", choices=("auto", *TEMPLATES), default="auto",
                        help="prompt format: chat (dialogue turns) or alpaca (one instruction "
                             "per message); auto: the one the adapter, else the checkpoint, "
                             "records it was fine-tuned on, else chat (default: auto)")
    parser.add_argument("--max-new-tokens", type=int, default=d["max_new_tokens"], metavar="N",
                        help="longest reply in tokens, >= 1 (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=d["temperature"], metavar="T",
                        help="> 0; lower is more predictable (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=d["top_k"], metavar="K",
                        help="sample from the K most likely tokens; 0 = all (default: "
                             "%(default)s)")
    parser.add_argument("--top-p", type=float, default=d["top_p"], metavar="P",
                        help="nucleus sampling, 0 < P <= 1; 1 = off (default: %(default)s)")
    parser.add_argument("--repetition-penalty", type=float, default=d["repetition_penalty"],
                        metavar="R", help="> 1 discourages tokens already seen (default: "
                                          "%(default)s, off)")
    parser.add_argument("--greedy", action="store_true",
                        help="always the most likely token (ignores temperature/top-k/top-p; "
                             "/greedy on|off changes it in the chat)")
    parser.add_argument("--seed", type=int, default=None, metavar="S",
                        help="seed of the sampling random numbers (default: fresh each run)")
    twin.add_inference_args(parser)


def run(args: argparse.Namespace) -> int:
    for flag, value, least, what in (("--max-new-tokens", args.max_new_tokens, 1, " in a chat"),
                                     ("--top-k", args.top_k, 0, " (0 = all tokens)"),
                                     ("--seed", args.seed, 0, "")):
        if value is not None and value < least:  # before the model loads
            raise SamplingError(f"{flag} must be >= {least}{what}, got {value}")
    config = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_k=args.top_k or None, top_p=_off_at_one(args.top_p),
                            repetition_penalty=args.repetition_penalty, greedy=args.greedy)
    session = ChatSession.load(args.twin, args.ckpt, adapter=args.adapter,
                               device=getattr(args, "device", None),
                               dtype=getattr(args, "dtype", None), config=config, seed=args.seed,
                               template=None if args.template == "auto" else args.template)
    interactive = sys.stdin.isatty()
    for notice in session.notices:
        print(f"note: {notice}", flush=True)
    source = "from --template" if session.template_source == CHOSEN else session.template_source
    print(f"chatting with {args.ckpt}{f' + {args.adapter}' if args.adapter else ''} "
          f"({args.backend} twin, {session.template} format {source}, context "
          f"{session.block_size} tokens); /help for commands, /quit to leave", flush=True)
    chat_loop(session, sys.stdin, sys.stdout, interactive)
    return 0


def chat_loop(session: ChatSession, stdin: TextIO, out: TextIO, interactive: bool) -> None:
    """Read messages and commands until /quit or end of input; stream each reply to `out`."""
    say = _printer(out)
    while True:
        if interactive:
            try:
                line = input("you> ")
            except EOFError:
                say()
                return
        else:
            line = stdin.readline()
            if not line:
                return
        line = line.strip()
        if not line:
            say("(empty message ignored: type something to say, or /help)")
            continue
        if line.startswith("/"):
            if not command(session, line, say):
                return
            continue
        try:
            notices, chunks = session.send(line)
        except ValueError as e:  # e.g. a character a char-level tokenizer does not know
            say(f"error: {' '.join(str(e).split())}")
            continue
        for notice in notices:
            say(f"[{notice}]")
        say("bot> ", end="")
        n = 0
        try:
            for chunk in chunks:
                say(chunk, end="")
                n += len(chunk)
        except KeyboardInterrupt:
            chunks.close()
            say(" [stopped]", end="")
        say("" if n else "(no reply: the model ended its turn at once)")


def command(session: ChatSession, line: str, say: Callable[..., None]) -> bool:
    """Run one /command; False means quit. Bad values print an error and change nothing."""
    name, _, value = line.partition(" ")
    value = value.strip()
    if name in ("/quit", "/exit"):
        return False
    if name == "/help":
        say(HELP)
    elif name == "/reset":
        session.reset()
        say("[conversation reset]")
    elif name in SETTERS:
        field, parse, valid = SETTERS[name]
        if not value:
            say(f"{name}: {_setting(session, field)}; give a value to change it")
            return True
        try:
            session.update(**{field: parse(value)})
        except (ValueError, SamplingError):  # SamplingError's text names CLI flags: not here
            say(f"error: {name} {value}: give {valid}")
            return True
        say(f"[{_setting(session, field)}]")
    else:
        say(f"unknown command {name}; /help lists them")
    return True


def _setting(session: ChatSession, field: str) -> str:
    """`field = value`, saying when greedy decoding leaves the value without effect."""
    config = session.config
    if field == "greedy":
        return ("greedy = on: always the most likely token (/greedy off to sample)"
                if config.greedy else "greedy = off")
    value = getattr(config, field)
    text = f"{field} = {'off' if value is None else value}"  # top_k / top_p None: all tokens
    if field in NO_EFFECT_WHEN_GREEDY and config.greedy:
        text += " (no effect while /greedy is on)"
    elif field in NO_EFFECT_WHEN_GREEDY and config.top_k == 1 and field != "top_k":
        text += " (no effect while top_k = 1: always the most likely token)"
    return text


def _off_at_one(p: float | None) -> float | None:
    return None if p is None or p == 1.0 else p


def _printer(out: TextIO) -> Callable[..., None]:
    def say(text: str = "", end: str = "\n") -> None:
        print(text, end=end, file=out, flush=True)

    return say
