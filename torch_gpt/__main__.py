"""`python -m torch_gpt COMMAND ...`: the same subcommands and flags as numpy_gpt, plus
--device, --dtype and --compile where they apply (see numpy_gpt/cli.py)."""

import sys

from numpy_gpt.cli import main

if __name__ == "__main__":
    sys.exit(main(backend="torch"))
