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


def levenshtein(a: str, b: str) -> int:
    """Edit distance: insertions, deletions and substitutions each cost 1."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A hint naming the closest candidate, or "" when none is close enough to help."""
    best = None
    best_distance = 0
    for candidate in sorted(candidates):
        distance = levenshtein(word.lower(), candidate.lower())
        if best is None or distance < best_distance:
            best, best_distance = candidate, distance
    if best is None:
        return ""
    # Allow about one typo per three letters: close enough to be the same word.
    if best_distance <= max(1, len(word) // 3) or best.startswith(word) or word.startswith(best):
        return f"did you mean '{best}'?"
    return ""
