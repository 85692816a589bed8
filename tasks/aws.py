"""Call any AWS API: a boto3 client method by service and action, with pagination and waiters.

``service`` is boto3's client name (``ec2``, ``lambda``, ``s3``, ``sts``...), ``action``
the method (``describe_instances``; the API's own name ``DescribeInstances`` works too),
``params`` its keyword arguments as the boto3 documentation gives them. The result is the
response itself, made JSON-safe: ``steps.x.Reservations``. Datetimes become ISO 8601
text, binary fields base64 (as the AWS CLI shows them), a streamed body (``s3
get_object``'s ``Body``, ``lambda invoke``'s ``Payload``) its text, read up to 1 MiB
(``truncated`` lists the bodies cut there). ``ResponseMetadata`` is left out but for
``request_id``; a response key the engine owns (``status``, ``error``...) is renamed
``response_status``, ``response_error``...

``paginate: true`` follows every page with boto3's paginator and merges them (lists
joined), as the AWS CLI does; ``pages`` tells how many were read. To bound it, give
``params: {PaginationConfig: {MaxItems: 500}}``.

``wait: {waiter: NAME, params: {...}}`` polls with one of the service's waiters
(``instance_running``, ``function_active``, ``bucket_exists``...) after the action, or
alone when there is no action; the poll interval and attempts are the waiter's, unless
``delay``, ``max_attempts`` or ``timeout`` say otherwise, and a cancelled or timed-out
step stops polling at once. Without an action the result is the waiter's last response.

Credentials, region and endpoint come from boto3's standard chain, ``profile``, ``region``
and ``endpoint_url``; the step's ``env`` is read first for ``AWS_*`` variables. A
failure is one line with AWS's error code and message (``ec2.run_instances failed:
InvalidAMIID.Malformed: ...``). An unknown service, action or waiter gets a "did you mean".

``changed`` is false for actions that only read (``describe_``, ``list_``, ``get_``,
``head_``...) and for a wait alone; true otherwise (use ``changed_when`` to say better).
Under ``--dry-run``, calls that only read (``describe_``, ``list_``, ``get_``, ``head_``)
are made, so later steps can plan with what they return; no other call is made, except
that an EC2 action with a ``DryRun`` parameter is sent with ``DryRun: true``: AWS checks
the permissions and parameters and changes nothing, and the step says whether the call
would have succeeded. Waits are not made.
"""

from __future__ import annotations

import time
from typing import Any

from runner.errors import HandlerError
from runner.schema import DURATION
from runner.units import parse_duration
from tasks import _aws

name = "aws"
schema = {
    "type": "object",
    "properties": {
        "service": {"type": "string", "description": "boto3 client name: ec2, s3, lambda, sts, iam..."},
        "action": {"type": "string", "description": "Client method, snake_case: describe_instances."},
        "params": {"type": "object", "description": "The method's arguments, as boto3 takes them."},
        "paginate": {"type": "boolean", "default": False, "description": "Read every page and merge them."},
        "wait": {
            "type": "object",
            "properties": {
                "waiter": {"type": "string", "description": "instance_running, function_active..."},
                "params": {"type": "object", "description": "The waiter's arguments."},
                "delay": {**DURATION, "description": "Time between polls (default: the waiter's)."},
                "max_attempts": {"type": "integer", "minimum": 1, "description": "Default: the waiter's."},
                "timeout": {**DURATION, "description": "Give up (and fail) after this long."},
            },
            "required": ["waiter"],
            "additionalProperties": False,
            "description": "Poll a boto3 waiter after the action (or alone).",
        },
        "region": {"type": "string"},
        "endpoint_url": {"type": "string", "description": "For LocalStack, moto and other endpoints."},
        "profile": {"type": "string", "description": "A profile from ~/.aws/config."},
    },
    "required": ["service"],
    "anyOf": [{"required": ["action"]}, {"required": ["wait"]}],
    "additionalProperties": False,
}
result = {
    "(response keys)": "the response of the action, JSON-safe (Reservations, Functions, Contents...)",
    "request_id": "AWS's request id of the (last) call",
    "pages": "with paginate: how many pages were read",
    "waited": "with wait: {waiter, polls, seconds}",
    "truncated": "paths of streamed bodies cut at 1 MiB",
}
example = """\
- id: launch
  aws:
    service: ec2
    action: run_instances
    params: {ImageId: ami-0abcdef1234567890, InstanceType: t3.micro, MinCount: 1, MaxCount: 1}
    region: eu-west-1
- aws:
    service: ec2
    wait:
      waiter: instance_running
      params: {InstanceIds: "{{ steps.launch.Instances | map(attribute='InstanceId') | list }}"}
      timeout: 10m
- aws: {service: lambda, action: list_functions, paginate: true}
"""

READ_ONLY = (
    "describe_",
    "list_",
    "get_",
    "head_",
    "batch_get_",
    "scan",
    "query",
    "search_",
    "lookup_",
    "select_",
    "estimate_",
    "preview_",
    "validate_",
    "test_",
)
# Calls made even under --dry-run, so that later steps can plan with what they found.
DRY_RUN_READS = ("describe_", "list_", "get_", "head_")
MINTS = frozenset(
    (
        "get_id",
        "get_open_id_token",
        "get_open_id_token_for_developer_identity",
        "get_credentials_for_identity",
    )
)
# Result keys the engine sets (SPEC §2), which a response key must not overwrite.
ENGINE_KEYS = frozenset(
    [
        "status",
        "ok",
        "changed",
        "failed",
        "skipped",
        "attempts",
        "duration",
        "started",
        "error",
        "skip_reason",
        "dry_run",
        "verdict",
        "args",
        "timed_out",
        "history",
    ]
)


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    service = str(args["service"]).strip().lower()
    where = _aws.Where.of(service, args, getattr(ctx, "env", {}) or {})
    waiting = args.get("wait")
    methods, waiters = _aws.names(where)  # unknown names fail here, with a did-you-mean
    method = _method(methods, service, args["action"]) if args.get("action") else None
    if waiting and waiting["waiter"] not in waiters:
        raise _aws.UnknownName(f"waiter of {service}", str(waiting["waiter"]), waiters)
    if ctx.dry_run and not (method is not None and reads_only(method) and not waiting):
        return _dry_run(where, method, args, waiting)
    client = _aws.client(where)
    out: dict[str, Any] = {}
    if method is not None:
        out = _call(client, where, method, dict(args.get("params") or {}), bool(args.get("paginate")), ctx)
    if waiting:
        last, waited = _wait(client, where, waiting, ctx)
        if method is None:
            out = _result(last, ctx)
        out["waited"] = waited
    out["changed"] = method is not None and not method.startswith(READ_ONLY)
    if ctx.dry_run:
        out["dry_run"] = f"called {service}.{method}: it only reads"
    return out


def reads_only(method: str) -> bool:
    """Whether a call is safe to make under --dry-run: it describes, lists or gets, and
    creates nothing (Cognito's get_id creates an identity, say)."""
    return method.startswith(DRY_RUN_READS) and method not in MINTS


def _method(methods: dict[str, str], service: str, action: str) -> str:
    """The client's snake_case method for ``action`` (which may be the API's PascalCase name)."""
    if action in methods:
        return action
    by_api = {api: snake for snake, api in methods.items()}
    if action in by_api:
        return by_api[action]
    raise _aws.UnknownName(f"action of {service}", action, methods)


def _call(
    client: Any, where: _aws.Where, method: str, params: dict[str, Any], paginate: bool, ctx: Any
) -> dict:
    call = f"{where.service}.{method}"
    try:
        if not paginate:
            return _result(getattr(client, method)(**params), ctx)
        if not client.can_paginate(method):
            raise _aws.AwsError(
                f"{call} cannot be paginated: remove paginate: true (it returns everything at once)"
            )
        pages = _Pages(client.get_paginator(method).paginate(**params), ctx)
        from botocore.paginate import PageIterator

        merged = PageIterator.build_full_result(pages)
        out = _result(merged, ctx)
        out["pages"] = pages.count
        if pages.request_id:
            out["request_id"] = pages.request_id
        return out
    except HandlerError:
        raise
    except Exception as exc:
        raise _aws.aws_error(exc, where, call) from exc


class _Pages:
    """A paginator's pages, read one by one, that stop when the step is cancelled.

    It stands in for botocore's page iterator in its ``build_full_result`` (which merges
    the pages as the AWS CLI does): attributes not defined here are the iterator's."""

    def __init__(self, pages: Any, ctx: Any):
        self._pages = pages
        self._ctx = ctx
        self.count = 0
        self.request_id = ""

    def __iter__(self) -> Any:
        for page in self._pages:
            if self._ctx.cancelled():
                raise HandlerError("cancelled while reading pages")
            self.count += 1
            self.request_id = page.get("ResponseMetadata", {}).get("RequestId", "") or self.request_id
            yield page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pages, name)


def _result(response: dict[str, Any], ctx: Any) -> dict[str, Any]:
    response = dict(response)
    metadata = response.pop("ResponseMetadata", None) or {}
    truncated: list[str] = []
    out = {
        (f"response_{key}" if key in ENGINE_KEYS else key): value
        for key, value in _aws.json_safe(response, truncated).items()
    }
    if metadata.get("RequestId"):
        out["request_id"] = metadata["RequestId"]
    if truncated:
        out["truncated"] = truncated
        ctx.log(f"cut at {_aws.BODY_CAP} bytes: {', '.join(truncated)}")
    return out


# -- waiters --------------------------------------------------------------------------------------


def _wait(client: Any, where: _aws.Where, spec: dict[str, Any], ctx: Any) -> tuple[dict[str, Any], dict]:
    """Poll the waiter until success; fail on its failure states, its attempts or ``timeout``.

    botocore's ``Waiter.wait`` sleeps where a step cannot cancel it; this loop follows the
    same acceptors and rules, sleeping through ``ctx.wait``."""
    import botocore.exceptions as bex

    waiter_name = str(spec["waiter"])
    config = client.get_waiter(waiter_name).config
    operation = client.meta.method_to_api_mapping
    method = {api: snake for snake, api in operation.items()}[config.operation]
    delay = parse_duration(spec["delay"]) if "delay" in spec else float(config.delay)
    attempts = int(spec.get("max_attempts") or 0) or (None if "timeout" in spec else int(config.max_attempts))
    timeout = parse_duration(spec["timeout"]) if "timeout" in spec else None
    params = dict(spec.get("params") or {})
    call = f"{where.service} waiter {waiter_name}"
    start = time.monotonic()
    polls = 0
    while True:
        polls += 1
        try:
            response = getattr(client, method)(**params)
        except bex.ClientError as exc:  # acceptors may expect an error (bucket_not_exists...)
            response = exc.response
        except Exception as exc:
            raise _aws.aws_error(exc, where, call) from exc
        state, acceptor = _match(config.acceptors, response)
        waited = {"waiter": waiter_name, "polls": polls, "seconds": round(time.monotonic() - start, 3)}
        if state == "success":
            return response, waited
        if state == "failure" or (state is None and "Error" in response):
            error = response.get("Error", {})
            why = f"{error.get('Code')}: {error.get('Message')}" if error else _explain(acceptor)
            raise _aws.AwsError(f"{call} failed after {polls} polls: {why}", result={"waited": waited})
        elapsed = time.monotonic() - start
        if attempts is not None and polls >= attempts:
            raise _aws.AwsError(
                f"{call}: still not there after {polls} polls ({elapsed:.0f} s); "
                "raise max_attempts or timeout",
                result={"waited": waited},
            )
        if timeout is not None and elapsed + delay > timeout:
            raise _aws.AwsError(
                f"{call}: still not there after {elapsed:.0f} s ({polls} polls), timeout is {timeout:g} s",
                result={"waited": waited},
            )
        if ctx.wait(delay):
            raise HandlerError(f"cancelled while waiting ({call})", result={"waited": waited})


def _match(acceptors: Any, response: dict[str, Any]) -> tuple[str | None, Any]:
    for acceptor in acceptors:
        if acceptor.matcher_func(response):
            return acceptor.state, acceptor
    return None, None


def _explain(acceptor: Any) -> str:
    if acceptor is None:
        return "a failure state"
    return f"{acceptor.argument or acceptor.matcher} is {acceptor.expected!r}, a failure state"


# -- dry run --------------------------------------------------------------------------------------


def _dry_run(where: _aws.Where, method: str | None, args: dict[str, Any], waiting: Any) -> dict[str, Any]:
    if method is None:
        return {"changed": False, "dry_run": f"would wait for {where.service} waiter {waiting['waiter']}"}
    call = f"{where.service}.{method}"
    then = f", then wait for {waiting['waiter']}" if waiting else ""
    if method.startswith(READ_ONLY):
        return {"changed": False, "dry_run": f"would call {call}{then}"}
    if where.service != "ec2":
        return {"dry_run": f"would call {call}{then}"}
    # EC2 checks a DryRun request (permissions, parameters) without doing anything.
    import botocore.exceptions as bex

    try:
        client = _aws.client(where)
        api = client.meta.method_to_api_mapping[method]
        shape = client.meta.service_model.operation_model(api).input_shape
        if shape is None or "DryRun" not in shape.members:
            return {"dry_run": f"would call {call}{then}"}
        getattr(client, method)(**{**dict(args.get("params") or {}), "DryRun": True})
    except bex.ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "DryRunOperation":
            return {"changed": True, "dry_run": f"would call {call}{then} (AWS's DryRun check passed)"}
        return {
            "dry_run": f"would call {call}, which AWS's DryRun check says would fail: "
            f"{error.get('Code')}: {error.get('Message')}"
        }
    except HandlerError as exc:
        return {"dry_run": f"would call {call}{then} (not checked: {exc})"}
    except Exception as exc:
        return {"dry_run": f"would call {call}{then} (not checked: {_aws.aws_error(exc, where, call)})"}
    return {"dry_run": f"would call {call}{then}"}
