"""numpy_gpt: a GPT-2 style transformer in pure NumPy, every backward pass written by hand.

    from numpy_gpt import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=65, block_size=64), dtype="float64", seed=0)
    logits, loss, cache = model.forward(idx, targets)
    grads = model.backward(cache)

The folders: nn/ (the model and its math), tokenizers/, data/, training/, generation/, hf/
(Hugging Face GPT-2 folders), cli/ (the command line of both twins), files/ (safe writes),
exercises/ (write the backward passes yourself); twin.py is what the shared pipeline needs
from a twin.
"""

from .nn.config import ConfigError, GPTConfig
from .nn.model import GPT

__all__ = ["GPT", "ConfigError", "GPTConfig"]
