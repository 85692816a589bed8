"""Built-in task handlers, one module each.

Every module here is a handler (see ``runner.registry``): ``name``, ``schema``, a
docstring, ``run(args, ctx)``, and optionally ``shorthand``, ``result`` and
``example``. Modules whose name starts with ``_`` are helpers, not handlers.
Handler modules import heavy libraries (boto3, requests) inside ``run`` only, so
listing and validating stay fast.
"""
