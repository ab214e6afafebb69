"""From text files to token files: finding and parsing the datasets (datasets), tokenizing
(encode), the prepared folder (prepare), reading it back in batches (dataset), and the chat
prompt format trained on and prompted with (chat_format).

    from numpy_gpt.data import TokenDataset      # dataset.py's names, the ones used most
"""

from .dataset import (
    IGNORE_INDEX,
    DataError,
    ExampleLoader,
    TokenDataset,
    collate_examples,
    get_batch,
    rng_from_state,
    rng_state,
)

__all__ = ["IGNORE_INDEX", "DataError", "ExampleLoader", "TokenDataset", "collate_examples",
           "get_batch", "rng_from_state", "rng_state"]
