"""`python -m attn.cli` (same as the `attn` command)."""

from attn.cli.app import main

main()
