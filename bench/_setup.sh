# Sourced by the bench scripts: find the real interpreter and runbook, compile the checkout.
# Sets PY and RUNBOOK. Run from the repository's root.

# The real interpreter, not a version-manager shim (a shim adds a bash start to every run).
PY="$(python3 -c 'import sys; print(sys.executable)')"
RUNBOOK="$(dirname "$PY")/runbook"
if [ ! -x "$RUNBOOK" ]; then
    # python3 is another one (say a virtualenv's bin put first on PATH for Ansible): use the
    # runbook on PATH, through the shim if it is one, and the interpreter it runs on.
    RUNBOOK="$(command -v runbook)"
    if [[ "$RUNBOOK" == */shims/* ]] && command -v pyenv >/dev/null; then RUNBOOK="$(pyenv which runbook)"; fi
    PY="$(head -1 "$RUNBOOK" | sed 's/^#![[:space:]]*//')"
fi
# Users run an installed runbook, whose bytecode pip compiled; do the same for a checkout.
"$PY" -m compileall -q runner tasks schemas >/dev/null
