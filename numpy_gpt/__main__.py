"""`python -m numpy_gpt COMMAND ...`: see numpy_gpt/cli/main.py."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
