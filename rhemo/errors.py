"""The project's input errors: bad input from the user (config, corpus, store, checkpoint), not a bug.

The command-line entry points print an :class:`InputError` as one line naming the file, key or value, and exit
with status 2, instead of a traceback.
"""
from __future__ import annotations

__all__ = ["InputError", "DataError"]


class InputError(ValueError):
    """Bad input from the user; its message names the file, key or value and what was expected."""


class DataError(InputError):
    """The store, view or split cannot feed a run (empty split, constant training data, bad shapes)."""
