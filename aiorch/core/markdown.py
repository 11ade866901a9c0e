"""Markdown for artifacts."""

from __future__ import annotations


def table_cell(value: object) -> str:
    """Make a value safe inside a markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")
