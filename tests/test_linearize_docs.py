"""The worked examples of the linearize module docstring run and print what the text says they
print (the README's are run by tests/test_readme.py)."""

from __future__ import annotations

import doctest

import gdyn_jax.linearize

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_module_docstring_examples():
    result = doctest.testmod(gdyn_jax.linearize, optionflags=FLAGS)
    assert result.attempted >= 8 and result.failed == 0
