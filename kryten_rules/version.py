"""The package version, in a module of its own so that any stage can name it
without importing the public API in ``kryten_rules/__init__.py``."""

__version__ = "0.1.0"
