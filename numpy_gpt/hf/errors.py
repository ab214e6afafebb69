"""The Hugging Face importer's error, shared by importer.py and llama.py (so neither imports
the other to raise it)."""


class HFImportError(ValueError):
    """A folder that is not a checkpoint this model can represent; the message says why."""
