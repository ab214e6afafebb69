"""numpy_gpt: a GPT-2 style transformer in pure NumPy, every backward pass written by hand.

    from numpy_gpt import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=65, block_size=64), dtype="float64", seed=0)
    logits, loss, cache = model.forward(idx, targets)
    grads = model.backward(cache)
"""

from .config import ConfigError, GPTConfig
from .model import GPT

__all__ = ["GPT", "ConfigError", "GPTConfig"]
