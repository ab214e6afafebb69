"""A multi-turn chat with a checkpoint, for the terminal chatbot and the Streamlit page.

    session = ChatSession.load("numpy", "out/finetune-instruct-lora-numpy/merged")
    notices, chunks = session.send("what is a verb?")
    for text in chunks:                        # streamed as the tokens come
        print(text, end="", flush=True)        # the reply then joins session.history

The prompt is built by numpy_gpt.chat_format in the format the model was fine-tuned on,
the checkpoint's `chat_template` (finetune records it; "chat" when absent): "chat" is the
conversation so far ending in "Assistant:"; "alpaca" is the instruction prompt of the
message alone (Alpaca is single-turn). Generation stops at the end-of-turn token. The model
sees at most block_size tokens and the reply needs room, so the prompt gets block_size minus
a reserve for the reply (min(max_new_tokens, block_size / 2)); when the conversation does not
fit, the oldest turns are left out of the prompt first (a user turn with its reply), and a
message too long on its own is cropped to its end. Each such step is reported as a notice.
Sampling is either twin's generate() (numpy_gpt/generate.py, torch_gpt/generate.py) through
sample_cli.Sampler; nothing here touches logits. Library code: it never prints.

Deliberately omits: system prompts from the command line, saving conversations, batching
several users (the Streamlit page keeps one session per browser tab).
Ref: OpenAI chat "messages" (role, content); HF transformers chat templates (the prompt ends
with the assistant's header, add_generation_prompt).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .chat_format import EOT, Message, encode_alpaca_prompt, encode_prompt
from .checkpoint import read_meta
from .finetune import TEMPLATE_KEY
from .sample_cli import Sampler
from .sampling import SamplingConfig, resolve_config, stream_text

# the chat's sampling defaults (sample's are nanoGPT's, for free-running text)
CHAT_DEFAULTS: dict[str, Any] = {"max_new_tokens": 200, "temperature": 0.8, "top_k": 50,
                                 "top_p": 0.95, "repetition_penalty": 1.0}
TEMPLATES = ("chat", "alpaca")  # dialogue turns | one Alpaca instruction per message


def checkpoint_template(ckpt: str | Path) -> str:
    """The prompt format a checkpoint was fine-tuned on ("chat" when it does not say)."""
    template = read_meta(ckpt).get(TEMPLATE_KEY, "chat")
    return template if template in TEMPLATES else "chat"


class ChatSession:
    """A loaded model, its tokenizer, the sampling settings and the conversation so far."""

    def __init__(self, sampler: Sampler, config: SamplingConfig | None = None,
                 seed: int | None = None, template: str = "chat"):
        if template not in TEMPLATES:
            raise ValueError(f"unknown chat template {template!r}; choose one of {TEMPLATES}")
        self.sampler, self.template = sampler, template
        self.tokenizer = sampler.tokenizer
        if self.tokenizer.eot_id is None:
            raise ValueError(f"the checkpoint's {self.tokenizer.kind} tokenizer has no "
                             "end-of-turn token; chat needs one (see numpy_gpt.chat_format)")
        self.block_size: int = sampler.model.config.block_size
        self.config = resolve_config(config, {}) if config else SamplingConfig(**CHAT_DEFAULTS)
        self.rng = np.random.default_rng(seed)
        self.history: list[Message] = []
        self.context_start = 0  # history[context_start:] is what the prompt still shows

    @classmethod
    def load(cls, backend: str, ckpt: str | Path, *, adapter: str | Path | None = None,
             device: str | None = None, dtype: str | None = None,
             config: SamplingConfig | None = None, seed: int | None = None,
             template: str | None = None) -> ChatSession:
        """Load `ckpt` in one twin ("numpy" | "torch"), with a LoRA `adapter` folder on top;
        `template` defaults to the checkpoint's (the adapter's folder is not consulted)."""
        sampler = Sampler.load(backend, ckpt, device=device, dtype=dtype)
        if adapter is not None:
            attach_adapter(sampler, backend, adapter)
        return cls(sampler, config, seed, template or checkpoint_template(ckpt))

    # ------------------------------------------------------------------ settings

    def update(self, **settings: Any) -> SamplingConfig:
        """Change sampling settings (SamplingConfig fields); a bad value raises SamplingError
        and leaves the settings as they were."""
        self.config = resolve_config(self.config, settings)
        return self.config

    def reset(self) -> None:
        """Forget the conversation (the settings stay)."""
        self.history, self.context_start = [], 0

    @property
    def reserve(self) -> int:
        """Context positions kept free for the reply."""
        return max(1, min(self.config.max_new_tokens, self.block_size // 2))

    # ------------------------------------------------------------------ a turn

    def send(self, message: str) -> tuple[list[str], Iterator[str]]:
        """Add a user message; returns (notices about cropping, the reply's text chunks).

        The reply streams lazily; when the stream ends (or is closed early) the user turn and
        the reply so far join the history. An empty message raises ValueError.
        """
        if not message.strip():
            raise ValueError("empty message: type something to say")
        ids, message, notices = self.fit_prompt(message.strip())
        return notices, self._reply(ids, message)

    def fit_prompt(self, message: str) -> tuple[list[int], str, list[str]]:
        """(prompt ids, the message as sent, notices): the history cropped to the window."""
        budget = self.block_size - self.reserve
        start = self.context_start
        ids = self._prompt(self.history[start:], message)
        while len(ids) > budget and start < len(self.history) and self.template == "chat":
            start += 1  # drop the oldest message, then its reply, so a user turn comes first
            while start < len(self.history) and self.history[start]["role"] == "assistant":
                start += 1
            ids = self._prompt(self.history[start:], message)
        notices = []
        if start > self.context_start:
            notices.append(f"the conversation is longer than the model's context "
                           f"({self.block_size} tokens): left out its {start} oldest message(s)")
            self.context_start = start
        if len(ids) > budget:
            message = self._crop(message, budget)
            ids = self._prompt([], message)
            notices.append(f"your message is longer than the model's context: kept its last "
                           f"{len(message)} characters")
        return ids, message, notices

    def _crop(self, message: str, budget: int) -> str:
        """The longest suffix of `message` whose prompt fits `budget` (binary search)."""
        lo, hi = 1, len(message)  # 1 char must fit: block_size leaves room for the template
        while lo < hi:
            mid = (lo + hi + 1) // 2
            fits = len(self._prompt([], message[-mid:])) <= budget
            lo, hi = (mid, hi) if fits else (lo, mid - 1)
        return message[-lo:]

    def _prompt(self, history: list[Message], message: str) -> list[int]:
        if self.template == "alpaca":  # single-turn: the instruction alone
            return encode_alpaca_prompt(self.tokenizer, message)
        return encode_prompt(self.tokenizer, [*history, {"role": "user", "content": message}])

    def _reply(self, ids: list[int], message: str) -> Iterator[str]:
        s = self.sampler
        eot = self.tokenizer.eot_token or EOT
        config = dataclasses.replace(self.config, stop_ids=(self.tokenizer.eot_id,),
                                     stop_strings=(eot,), vocab_limit=s.vocab_limit)
        tokens = s.generate(s.model, ids, config, rng=self.rng, **s.generate_kwargs)
        parts: list[str] = []
        try:
            for text in stream_text(tokens, self.tokenizer, config.stop_strings):
                if not parts:  # the template puts a space after "Assistant:"; not shown
                    text = text.lstrip()
                    if not text:
                        continue
                parts.append(text)
                yield text
        finally:
            self.history += [{"role": "user", "content": message},
                             {"role": "assistant", "content": "".join(parts).strip()}]


def attach_adapter(sampler: Sampler, backend: str, adapter: str | Path) -> None:
    """Put a LoRA adapter folder (numpy_gpt.lora.save_adapter's files) on a loaded model:
    numpy keeps it beside the weights (generate merges it once per reply), torch merges it."""
    if backend == "numpy":
        from .lora import load_adapter

        lcfg, tensors, _ = load_adapter(adapter)
        sampler.model.set_lora(lcfg, tensors)
        return
    from torch_gpt.lora import load_adapter as torch_load_adapter
    from torch_gpt.lora import merge_lora

    torch_load_adapter(sampler.model, adapter)
    merge_lora(sampler.model).eval()
