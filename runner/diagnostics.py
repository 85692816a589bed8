"""Positions in playbook files, and problems reported against them.

Every problem runbook finds in a playbook prints as one line::

    FILE:LINE:COL: WHERE: WHAT (hint: HINT)

LINE and COL are 1-based, as editors count. WHERE names the step (its ``id``, else
its ``name``, else its place such as ``steps[3]``) and the argument path inside it, such
as ``step 'upload' (s3_upload.bucket)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Position:
    """Where something is in a file. ``line`` and ``col`` are 1-based."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a playbook."""

    position: Position | None
    where: str
    message: str
    hint: str = ""

    def format(self) -> str:
        parts = [str(self.position)] if self.position else []
        if self.where:
            parts.append(self.where)
        text = ": ".join([*parts, self.message])
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def sort_key(self) -> tuple[str, int, int]:
        if self.position is None:
            return ("", 0, 0)
        return (self.position.file, self.position.line, self.position.col)


def edit_distance(a: str, b: str) -> int:
    """Edits from ``a`` to ``b``: insert, delete, substitute, or swap two neighbours, each 1.

    (Damerau's optimal string alignment: ``biuld`` is one edit from ``build``.)
    """
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A hint naming the closest candidate, or "" when none is close enough to help."""
    best = None
    best_distance = 0
    for candidate in sorted(candidates):
        distance = edit_distance(word.lower(), candidate.lower())
        if best is None or distance < best_distance:
            best, best_distance = candidate, distance
    if best is None:
        return ""
    # Allow about one typo per three letters: close enough to be the same word.
    if best_distance <= max(1, len(word) // 3) or best.startswith(word) or word.startswith(best):
        return f"did you mean '{best}'?"
    return ""
