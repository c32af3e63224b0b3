"""Stage 2, compile: resolved specs to one immutable :class:`~.ruleset.RuleSet`.

``build`` turns specs into rules with their compiled regexes, templates and
the RE2 set; ``ruleset`` holds the result and the engine's candidate tables,
built once; ``load`` runs stage 1 and this stage for a path or a config and is
what the CLI, the tools and the rule manager call.
"""
