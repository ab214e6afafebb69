"""The chat and instruction templates, in one place, so training format == prompt format.

A formatted example is a list of Segments: pieces of text (or a special token) with a flag
saying whether the model should learn to produce them (the response) or only read them (the
prompt). prepare encodes each segment separately and concatenates, and a chat front end builds
its prompt from the *same* functions (`prompt_segments` / `encode_prompt`), so the ids a model
sees at inference are exactly those it was trained on; nothing depends on how a tokenizer would
merge across a prompt/response boundary.

Dialogue (roles system / user / assistant), one turn after another with no separator besides
the end-of-turn token:

    User: hi, how are you?<|endoftext|>Assistant: i'm fine.<|endoftext|>User: ...

An assistant turn is the prompt "Assistant:" followed by the response " i'm fine." and the
end-of-turn token (both learned); generation stops at that token. Instruction data uses the
Stanford Alpaca template (with and without an input), the output followed by end-of-turn.
The end-of-turn token is the tokenizer's `eot_token` (`<|endoftext|>` for gpt2/bpe/char,
`<END>` for word); ordinary segments are encoded with allowed_special="none", so a message
that contains the token's text cannot inject a real end-of-turn.

Deliberately omits: tool/function messages, multi-modal parts, per-model templates (ChatML).
Ref: tatsu-lab/stanford_alpaca train.py PROMPT_DICT; rasbt/LLMs-from-scratch ch07
(format_input, masking the prompt); OpenAI chat "messages" (role, content).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from .dataset import DataError

ROLES = ("system", "user", "assistant")
ROLE_LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}
EOT = "<|endoftext|>"  # default end-of-turn token (GPT-2's end of text)
TEMPLATES = ("chat", "alpaca")  # dialogue turns | one Alpaca instruction per message
# TEMPLATE_KEY (numpy_gpt.nn.checkpoint): the key of config.json and adapter_config.json naming
# the prompt format a model was fine-tuned on, one of TEMPLATES; generation/chat.py prompts in it

ALPACA_TEMPLATE_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)

Message = dict[str, str]  # {"role": one of ROLES, "content": text}


class Segment(NamedTuple):
    text: str  # ordinary text, or the special token's string when `special`
    response: bool  # True: tokens the model learns to produce (mask 1)
    special: bool = False  # True: `text` is a special token, encoded as its single id


def render(segments: Sequence[Segment]) -> str:
    """The plain text of a formatted example (what a tokenizer-free reader would see)."""
    return "".join(s.text for s in segments)


# ---- instruction data (Alpaca) -----------------------------------------------------------------
def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca prompt, ending in "### Response:\\n"; the model continues with the output."""
    if input.strip():
        return ALPACA_TEMPLATE_INPUT.format(instruction=instruction, input=input)
    return ALPACA_TEMPLATE.format(instruction=instruction)


def format_alpaca(instruction: str, input: str, output: str, eot: str = EOT) -> list[Segment]:
    """One training example: the prompt (not learned), then output + end-of-turn (learned)."""
    return [
        Segment(alpaca_prompt(instruction, input), False),
        Segment(output, True),
        Segment(eot, True, special=True),
    ]


# ---- dialogue ----------------------------------------------------------------------------------
def check_messages(messages: Any, where: str = "conversation") -> list[Message]:
    """Validate a list of {"role", "content"} dicts; raises DataError naming the bad entry."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: message {i} must be an object with a string 'content'")
        if m.get("role") not in ROLES:
            raise DataError(
                f"{where}: message {i} has role {m.get('role')!r}; use one of {list(ROLES)}"
            )
    return messages


def format_conversation(messages: Sequence[Message], eot: str = EOT) -> list[Segment]:
    """A whole conversation for training: every assistant turn's content and end-of-turn are
    the response; everything else is prompt."""
    segments: list[Segment] = []
    for m in check_messages(list(messages)):
        label = ROLE_LABELS[m["role"]]
        if m["role"] == "assistant":
            segments += [
                Segment(f"{label}:", False),
                Segment(f" {m['content']}", True),
                Segment(eot, True, special=True),
            ]
        else:
            segments += [Segment(f"{label}: {m['content']}", False), Segment(eot, False, True)]
    return segments


def prompt_segments(history: Sequence[Message], eot: str = EOT) -> list[Segment]:
    """The inference prompt after `history` (usually ending with a user turn): the formatted
    history, then "Assistant:". The model's continuation up to end-of-turn is the reply."""
    segments = format_conversation(history, eot) if history else []
    return segments + [Segment(f"{ROLE_LABELS['assistant']}:", False)]


def build_prompt(history: Sequence[Message], eot: str = EOT) -> str:
    """prompt_segments as text (for display; use encode_prompt to get the model's ids)."""
    return render(prompt_segments(history, eot))


def clean_reply(text: str, eot: str = EOT) -> str:
    """A generated continuation of build_prompt, cut at end-of-turn and stripped."""
    return text.split(eot, 1)[0].strip()


# ---- to token ids ------------------------------------------------------------------------------
def encode_segments(tokenizer: Any, segments: Sequence[Segment]) -> tuple[list[int], list[int]]:
    """(ids, mask): each segment encoded on its own and concatenated; mask 1 = response token.

    `tokenizer` is a numpy_gpt.tokenizers.Tokenizer. A special segment must be one of its
    special tokens.
    """
    ids: list[int] = []
    mask: list[int] = []
    for seg in segments:
        if seg.special:
            if seg.text not in tokenizer.special_tokens:
                raise DataError(
                    f"the {tokenizer.kind} tokenizer has no special token {seg.text!r} "
                    f"(it has {sorted(tokenizer.special_tokens)}); rebuild it with that token"
                )
            part = [tokenizer.special_tokens[seg.text]]
        else:
            part = tokenizer.encode(seg.text, allowed_special="none")
        ids += part
        mask += [int(seg.response)] * len(part)
    return ids, mask


def encode_prompt(tokenizer: Any, history: Sequence[Message]) -> list[int]:
    """The ids of the inference prompt for `history`: identical to the ids of the same turns
    in a training example, followed by the ids of "Assistant:"."""
    eot = tokenizer.eot_token or EOT
    return encode_segments(tokenizer, prompt_segments(history, eot))[0]


def encode_alpaca_prompt(tokenizer: Any, instruction: str, input: str = "") -> list[int]:
    """The ids of the inference prompt for one instruction: identical to the prompt part of
    a format_alpaca training example (the model continues with the output, then eot)."""
    return encode_segments(tokenizer, [Segment(alpaca_prompt(instruction, input), False)])[0]
