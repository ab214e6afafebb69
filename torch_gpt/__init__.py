"""torch_gpt: the PyTorch twin of numpy_gpt, with the same parameter names and checkpoints.

    import torch_gpt
    model = torch_gpt.GPT(torch_gpt.GPTConfig(vocab_size=65, block_size=64), dtype="float64")
    logits, loss = model(idx, targets)
"""

from numpy_gpt.nn.config import GPTConfig

from .model import GPT

__all__ = ["GPT", "GPTConfig"]
