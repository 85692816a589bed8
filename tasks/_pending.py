"""A placeholder ``run`` for handlers whose arguments are declared but whose work is not built."""

from __future__ import annotations

from typing import Any

from runner.errors import HandlerError


def not_built(name: str) -> Any:
    def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
        raise HandlerError(f"the '{name}' handler is declared but not built yet in this version")

    return run
