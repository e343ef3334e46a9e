"""Argument types shared by the command line's modules (``cli.py`` and ``cli_experiments.py``).

They live here so that neither CLI module imports the other for them: ``cli.py`` registers the
experiment verbs from ``cli_experiments.py``, and both take their argparse types from this module.
"""

from __future__ import annotations

import argparse

__all__ = ["nonneg_int"]


def nonneg_int(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {v}")
    return v
