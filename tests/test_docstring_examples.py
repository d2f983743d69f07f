"""Every ``>>>`` example in a docstring of the library runs and prints what it shows (doctest)."""
from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODULES = sorted(".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                 for package in ("rhemo", "models", "quaternion_layers") for path in (REPO / package).rglob("*.py")
                 if ">>>" in path.read_text(encoding="utf-8"))


def test_the_library_has_examples():
    assert len(MODULES) >= 20 and "rhemo.train.resume" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (see above)"
