"""Markdown for reports and cards."""

from __future__ import annotations


def markdown_table(header: list, rows: list[list]) -> str:
    """A GitHub-flavoured markdown table; cells are written with `str`."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)
