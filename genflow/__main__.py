"""`python -m genflow ...`: the `genflow` command, where the script is not on PATH."""

from genflow.cli import main

raise SystemExit(main())
