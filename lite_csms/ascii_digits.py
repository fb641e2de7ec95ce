"""ASCII digits only: str.isdigit() also admits superscripts, fullwidth and Arabic-Indic
digits, which int() then refuses or reads as another number: a stray character became a 500."""

from __future__ import annotations


def digits(text: str) -> bool:
    """True for a non-empty run of 0-9 and nothing else."""
    return text.isascii() and text.isdigit()
