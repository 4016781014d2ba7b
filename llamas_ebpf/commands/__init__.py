"""One module per command: `llamas X` is `commands/X.py`, with its options and its
orchestration; its output is rendered by `faces/`. `cli.py` is only the table of them."""
