"""The moderator's tools: ``test`` (rule tests in virtual time), ``explain``,
``replay`` and ``record``, and ``init``'s project files (``project``).

They drive the same stages as the service, in-process and without NATS
(``record`` aside, which listens to it).
"""
