"""``python -m kryten_rules``: the same as the ``kryten-rules`` command."""

from kryten_rules.cli import main

if __name__ == "__main__":
    main()
