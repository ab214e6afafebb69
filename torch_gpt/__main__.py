"""`python -m torch_gpt COMMAND ...`: see torch_gpt/cli.py."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
