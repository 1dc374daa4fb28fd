"""`python -m attn`: runs `python -m attn.cli` (the `attn` command). An entry point, not a
dependency: the library below never imports the command line."""

import runpy

if __name__ == "__main__":  # a spawned worker (attn tune --jobs) imports the main module again
    runpy.run_module("attn.cli", run_name="__main__", alter_sys=True)
