"""The ``kryten-rules`` command line: ``app`` holds the group, its options and
the helpers every command shares; each module adds its commands to it.

Importing this package registers every command; ``main`` is the entry point.
"""

from kryten_rules.cli import files, ruletools, service, tail
from kryten_rules.cli.app import common_options, main

# every command takes the common options, before or after its name
for _command in main.commands.values():
    _command.params.extend(common_options())

__all__ = ["files", "main", "ruletools", "service", "tail"]
