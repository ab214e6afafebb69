"""Entry point of `python -m parity` (the flags are documented in parity/cli.py)."""

from .cli import main

raise SystemExit(main())
