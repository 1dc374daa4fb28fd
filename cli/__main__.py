"""`python -m attn.cli` (same as the `attn` command)."""

from attn.cli.app import main

# Guarded: a spawned worker process (attn tune --jobs) imports the parent's main module again,
# and must not run the command a second time.
if __name__ == "__main__":
    main()
