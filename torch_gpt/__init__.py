"""torch_gpt: the PyTorch twin of numpy_gpt, with the same parameter names and checkpoints.

    import torch_gpt
    model = torch_gpt.GPT(torch_gpt.GPTConfig(vocab_size=65, block_size=64), dtype="float64")
    logits, loss = model(idx, targets)

PyTorch is an optional install (pip install '.[torch]'); it is imported when the model is
first used, so the `torch-gpt` command can say so in one line when it is missing.
"""

from numpy_gpt.nn.config import GPTConfig

__all__ = ["GPT", "GPTConfig"]


def __getattr__(name: str):
    if name == "GPT":
        from .model import GPT

        return GPT
    raise AttributeError(f"module 'torch_gpt' has no attribute {name!r}")
