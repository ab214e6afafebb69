"""A chat page for a checkpoint, in Streamlit (an optional dependency: pip install streamlit).

    streamlit run chat_app.py                                   # from the repository root
    streamlit run chat_app.py -- --ckpt out/finetune-instruct-lora-numpy/merged --backend torch

The sidebar picks the checkpoint folder (and an optional LoRA adapter folder), the twin
that runs it and the prompt format (auto: the one recorded by the adapter, else by the
checkpoint, else chat; the caption says which), a greedy switch (the sampling sliders it
overrides are disabled while it is on), sliders for temperature, top-k, top-p, repetition
penalty and the reply length; the page shows the conversation and streams each reply as it
is generated. An adapter that does not belong on the checkpoint is refused in one line, as in
the terminal chatbot. It listens on localhost only and opens no browser
(.streamlit/config.toml, read from the folder `streamlit run` starts in; --server.address
overrides it).

All the chat logic is numpy_gpt/generation/chat.py (the terminal chatbot's too): the
conversation lives in one ChatSession per browser tab (st.session_state); loaded models are
shared between tabs (st.cache_resource), keyed by twin, folder and adapter. Sharing is safe
because generating never changes a model: every reply's state (KV cache, random generator,
history) belongs to its tab's session, so two tabs chatting at once never mix replies
(tests/generation/test_app.py). A
message longer than the model's context is cropped to its end, with a notice, and the page
shows the part that was sent.

Ref: Streamlit docs, "Build a basic LLM chat app" (st.chat_message, st.chat_input,
st.write_stream).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import streamlit as st
    from streamlit import runtime
except ImportError:  # the page is optional; say how to get it, no traceback
    sys.exit("error: the chat page needs Streamlit: pip install streamlit")

from numpy_gpt.data.chat_format import TEMPLATES
from numpy_gpt.generation.chat import CHAT_DEFAULTS, ChatModel, ChatSession, load_chat_model

BACKENDS = ("numpy", "torch")


def page_args(argv: list[str]) -> argparse.Namespace:
    """Defaults given after `--` on the streamlit command line (other arguments ignored)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--ckpt", default="")
    parser.add_argument("--adapter", default="")
    parser.add_argument("--backend", choices=BACKENDS, default="numpy")
    return parser.parse_known_args(argv)[0]


def twin_named(backend: str):
    """The twin to load in: numpy_gpt's own, or torch_gpt's (imported only when chosen)."""
    if backend == "numpy":
        from numpy_gpt.twin import NUMPY

        return NUMPY
    try:
        from torch_gpt.twin import TORCH
    except ImportError as e:  # the torch twin is an optional install
        raise ValueError(f"the torch twin needs PyTorch ({e}): pip install '.[torch]'") from None
    return TORCH


@st.cache_resource(show_spinner="loading the model...")
def load_model(backend: str, ckpt: str, adapter: str) -> ChatModel:
    """One loaded model per (twin, checkpoint, adapter), shared by every tab."""
    return load_chat_model(twin_named(backend), ckpt, adapter or None)


def sidebar(defaults: argparse.Namespace) -> tuple[str, str, str, str, dict]:
    side = st.sidebar
    side.title("GPT chat")
    ckpt = side.text_input("Checkpoint folder", value=defaults.ckpt, key="ckpt",
                           placeholder="out/<run>/best")
    adapter = side.text_input("LoRA adapter folder (optional)", value=defaults.adapter,
                              key="adapter")
    backend = side.radio("Twin", BACKENDS, index=BACKENDS.index(defaults.backend),
                         key="backend", horizontal=True)
    template = side.radio("Prompt format", ("auto", *TEMPLATES), key="template",
                          horizontal=True, help="auto: the format the adapter, else the "
                          "checkpoint, records it was fine-tuned on (alpaca: one instruction "
                          "per message), else chat")
    d = CHAT_DEFAULTS
    greedy = side.toggle("Greedy: always the most likely token", key="greedy",
                         help="temperature, top-k and top-p have no effect while it is on")
    settings = {
        "greedy": greedy,
        "temperature": side.slider("Temperature", 0.05, 2.0, d["temperature"], 0.05,
                                   key="temperature", disabled=greedy),
        "top_k": side.slider("Top-k (0 = off)", 0, 200, d["top_k"], 1, key="top_k",
                             disabled=greedy) or None,
        "top_p": side.slider("Top-p (1 = off)", 0.05, 1.0, d["top_p"], 0.05, key="top_p",
                             disabled=greedy),
        "repetition_penalty": side.slider("Repetition penalty (1 = off)", 1.0, 2.0,
                                          d["repetition_penalty"], 0.05, key="rep"),
        "max_new_tokens": side.slider("Max reply tokens", 1, 512, d["max_new_tokens"], 1,
                                      key="max_new_tokens"),
    }
    if settings["top_p"] >= 1.0:
        settings["top_p"] = None
    return ckpt.strip(), adapter.strip(), backend, template, settings


def main() -> None:
    st.set_page_config(page_title="GPT chat", page_icon="💬")
    ckpt, adapter, backend, template, settings = sidebar(page_args(sys.argv[1:]))
    if not ckpt:
        st.info("Enter a checkpoint folder in the sidebar (e.g. the `merged` folder of a "
                "`finetune --lora` run, or a `best` folder of `train`).")
        return
    try:
        model = load_model(backend, str(Path(ckpt)), adapter)
    except (ValueError, FileNotFoundError, ImportError) as e:  # one line, no traceback
        st.error(f"cannot load {ckpt}: {' '.join(str(e).split())}")
        return
    key = (backend, ckpt, adapter, template)
    if st.session_state.get("session_key") != key:  # another model: a new conversation
        st.session_state.session_key = key
        st.session_state.session = ChatSession.start(
            model, template=None if template == "auto" else template)
    session: ChatSession = st.session_state.session
    session.update(**settings)
    if st.sidebar.button("Reset conversation", key="reset"):
        session.reset()
    st.sidebar.caption(f"{backend} twin, {session.template} format {session.template_source},"
                       f" context {session.block_size} tokens")
    for notice in session.notices:
        st.sidebar.warning(notice)

    for msg in session.history:
        st.chat_message(msg["role"]).write(msg["content"])
    message = st.chat_input("Say something")
    if not message:
        return
    try:
        notices, chunks = session.send(message)
    except ValueError as e:  # empty, or not encodable by this tokenizer
        st.warning(" ".join(str(e).split()))
        return
    st.chat_message("user").write(session.sent)  # a long paste: the part that fits (notice)
    with st.chat_message("assistant"):
        for notice in notices:
            st.caption(notice)
        reply = st.write_stream(chunks)
        if not reply:
            st.caption("(no reply: the model ended its turn at once)")


if runtime.exists():
    main()
else:  # `python chat_app.py`: Streamlit pages run under its server
    sys.exit("error: start the page with: streamlit run chat_app.py [-- --ckpt DIR]")
