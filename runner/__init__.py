"""runbook: a declarative YAML task runner for operations work.

The engine lives in this package, in three stages that the module names follow:
load (``loader``, ``schema``, ``checks`` → ``playbook``), render (``templating``)
and execute. Handlers live in the ``tasks`` package.
"""

__version__ = "0.1.0"
