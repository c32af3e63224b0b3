"""Stage 3, the engine: ``evaluate(event)`` against a RuleSet and state.

``evaluate`` holds :class:`~.evaluate.Engine` and its :class:`~.evaluate.Decision`;
``state`` the cooldown and budget store, its async backend interface and the
room state. The engine does no I/O and awaits nothing.
"""
