"""The project's input errors: bad input from the user (config, corpus, store, checkpoint), not a bug.

The command-line entry points print an :class:`InputError` as one line naming the file, key or value, and exit
with status 2, instead of a traceback. The data layer's errors are all input errors: ``StoreError`` (a
:class:`DataError`), ``ReaderError``, ``AudioError`` and ``SyntheticCorpusError`` of :mod:`rhemo.data`, and the
:class:`DataError` raised by label views, splits and normalisation. Both stay ``ValueError`` subclasses.
"""
from __future__ import annotations

__all__ = ["InputError", "DataError"]


class InputError(ValueError):
    """Bad input from the user; its message names the file, key or value and what was expected."""


class DataError(InputError):
    """The store, view or split cannot feed a run (empty split, constant training data, bad shapes)."""
