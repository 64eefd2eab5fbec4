"""The worked examples of the README's "What exact means" section and of the linearize module
docstring run, and print what the text says they print."""

from __future__ import annotations

import doctest
from pathlib import Path

import gdyn_jax.linearize

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples():
    result = doctest.testfile(str(README), module_relative=False, optionflags=FLAGS)
    assert result.attempted >= 20 and result.failed == 0


def test_module_docstring_examples():
    result = doctest.testmod(gdyn_jax.linearize, optionflags=FLAGS)
    assert result.attempted >= 8 and result.failed == 0
