"""`python -m numpy_gpt COMMAND ...`: see numpy_gpt/cli.py."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(backend="numpy"))
