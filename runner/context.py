"""The names templates see, built once per run and extended per step.

``run_context`` gives the base of every template context: the playbook's variables
(their own templates rendered, in dependency order), ``env``, ``facts`` (gathered
only if read), ``run``, ``secrets`` and the ``steps`` results mapping the executor
fills in as steps finish. ``step_context`` adds ``item`` and ``loop`` for one loop item,
and ``result`` and ``attempt`` for ``until``/``failed_when``/``changed_when``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from runner.errors import TemplateError
from runner.facts import Facts
from runner.taskctx import env_text
from runner.templating import names_read, render


def resolve_vars(variables: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """Render the templates inside variables, each after the variables it reads.

    ``vars: {version: "1.4", artifact: "app-{{ version }}.tgz"}`` gives
    ``artifact == "app-1.4.tgz"``, whatever the order they are written in.
    """
    resolved: dict[str, Any] = {}
    in_progress: list[str] = []

    def resolve(name: str) -> None:
        if name in resolved:
            return
        if name in in_progress:
            cycle = [*in_progress[in_progress.index(name) :], name]
            raise TemplateError("variables refer to each other: " + " -> ".join(cycle))
        in_progress.append(name)
        for other in sorted(names_read(variables[name]) & set(variables)):
            if other != name:
                resolve(other)
        context = {**base, **resolved}
        try:
            resolved[name] = render(variables[name], context)
        except TemplateError as exc:
            raise TemplateError(f"variable '{name}': {exc}") from exc
        in_progress.pop()

    for name in variables:
        resolve(name)
    return resolved


def run_context(
    variables: Mapping[str, Any],
    run: Mapping[str, Any],
    env: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The context of a run: reserved names plus the variables, rendered.

    ``env`` is the playbook's ``env:``, rendered after the variables (it may read them)
    and added to ``env`` as text; ``context["run_env"]`` keeps just those additions.
    """
    base: dict[str, Any] = {
        "env": dict(os.environ),
        "facts": Facts(),
        "run": dict(run),
        "secrets": dict(secrets or {}),
        "steps": {},
    }
    base["vars"] = resolve_vars(variables, base)
    context = {**base["vars"], **base}
    try:
        added = {str(k): env_text(v) for k, v in render(dict(env or {}), context, ("env",)).items()}
    except TemplateError as exc:
        raise TemplateError(f"env: {exc}") from exc
    context["env"].update(added)
    context["run_env"] = added
    return context


def step_context(base: Mapping[str, Any], **names: Any) -> dict[str, Any]:
    """``base`` plus per-step names such as ``item``, ``loop``, ``result``, ``attempt``."""
    return {**base, **names}
