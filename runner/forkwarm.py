"""Imported once by the scheduler's fork server: what every scheduled run needs, loaded and warmed.

The fork server forks each run from its own memory, so what is imported and built
here (the handlers, the combined schema and its validator, the executor) costs every
run nothing: a run starts in milliseconds instead of a fresh interpreter's half second.
"""

import gc

from runner.checks import combined_schema
from runner.registry import builtin_handlers

combined_schema(builtin_handlers())
# What exists now lives as long as the fork server: taken out of the garbage collector's
# sight, a run's collections do not touch (and so copy) every page of it.
gc.freeze()
