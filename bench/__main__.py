"""`python -m bench`: see bench/cli.py and bench/README.md."""

from .cli import main

raise SystemExit(main())
