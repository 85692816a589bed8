"""The ``aws`` handler (SPEC §5b): any boto3 client method, against moto's server over HTTP.

Every test runs a real ``runbook play --output json`` process against moto's server
mode on 127.0.0.1 (``tests/s3server.py``), started once for this module, with dummy
credentials in the child's environment and ``AWS_ENDPOINT_URL`` in the playbook's
``env:`` (or ``endpoint_url:``). What runbook did is checked with boto3 against the same
server. Each test runs its steps in one playbook where it can, since each runbook process
pays for loading botocore.
"""

from __future__ import annotations

import base64
import io
import json
import os
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO
from .playing import Play, one_line_error, play
from .s3server import CREDENTIALS, NO_CREDENTIALS, REGION, MotoServer


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    # moto loads a thousand default AMIs into each region's EC2 at its first request (seconds);
    # the tests register the one image they need instead.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        moto = MotoServer()
        try:
            yield moto
        finally:
            moto.stop()


def boto(server: MotoServer, service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def steps(
    tmp_path: Path,
    server: MotoServer,
    *entries: dict[str, Any],
    flags: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    book_env: dict[str, str] | None = None,
    timeout: float = 90,
) -> Play:
    """Run these steps in one playbook whose ``env:`` points AWS at the moto server."""
    book = {
        "name": "aws-steps",
        "env": {"AWS_ENDPOINT_URL": server.url, **(book_env or {})},
        "steps": list(entries),
    }
    return play(tmp_path, json.dumps(book), *flags, env=CREDENTIALS if env is None else env, timeout=timeout)


def result_of(run: Play, key: str) -> dict[str, Any]:
    step = run.step(key)
    assert step["status"] in ("ok", "changed"), step
    return step["result"]


@pytest.fixture(scope="module")
def image(server: MotoServer) -> str:
    """An AMI registered in moto for the tests' instances."""
    made = boto(server, "ec2").register_image(
        Name="runbook-test", RootDeviceName="/dev/xvda", Architecture="x86_64", VirtualizationType="hvm"
    )
    return made["ImageId"]


# -- calls ----------------------------------------------------------------------------------------


def test_ec2_instances_run_are_waited_for_described_and_terminated(tmp_path, server, image):
    tag = uuid.uuid4().hex
    mine = {"Filters": [{"Name": "tag:run", "Values": [tag]}]}
    ids = "{{ steps.launch.Instances | map(attribute='InstanceId') | list }}"
    run = steps(
        tmp_path,
        server,
        {
            "id": "launch",
            "aws": {
                "service": "ec2",
                "action": "run_instances",
                "params": {
                    "ImageId": image,
                    "InstanceType": "t3.micro",
                    "MinCount": 2,
                    "MaxCount": 2,
                    "TagSpecifications": [
                        {"ResourceType": "instance", "Tags": [{"Key": "run", "Value": tag}]}
                    ],
                },
            },
        },
        {
            "id": "up",
            "aws": {"service": "ec2", "wait": {"waiter": "instance_running", "params": {"InstanceIds": ids}}},
        },
        {"id": "seen", "aws": {"service": "ec2", "action": "DescribeInstances", "params": mine}},
        {
            "id": "stop",
            "aws": {
                "service": "ec2",
                "action": "terminate_instances",
                "params": {"InstanceIds": ids},
                "wait": {"waiter": "instance_terminated", "params": {"InstanceIds": ids}, "delay": "100ms"},
            },
        },
    )
    launched = result_of(run, "launch")
    started = sorted(i["InstanceId"] for i in launched["Instances"])
    assert len(started) == 2 and run.step("launch")["status"] == "changed"
    assert launched["request_id"] and "ResponseMetadata" not in launched
    launch_time = launched["Instances"][0]["LaunchTime"]
    assert isinstance(launch_time, str) and launch_time[:4].isdigit() and "T" in launch_time  # ISO 8601
    up = result_of(run, "up")
    assert up["waited"]["waiter"] == "instance_running" and up["waited"]["polls"] >= 1
    assert run.step("up")["status"] == "ok"  # a wait alone changes nothing
    seen = result_of(run, "seen")
    assert sorted(i["InstanceId"] for r in seen["Reservations"] for i in r["Instances"]) == started
    assert run.step("seen")["status"] == "ok"  # a describe changes nothing
    stop = result_of(run, "stop")
    assert sorted(i["InstanceId"] for i in stop["TerminatingInstances"]) == started
    assert stop["waited"]["waiter"] == "instance_terminated"
    now = boto(server, "ec2").describe_instances(InstanceIds=started)
    assert {i["State"]["Name"] for r in now["Reservations"] for i in r["Instances"]} == {"terminated"}


def test_lambda_functions_are_listed(tmp_path, server):
    iam, lam = boto(server, "iam"), boto(server, "lambda")
    role = iam.create_role(RoleName=f"r-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def main(event, context):\n    return event\n")
    made = {f"fn-{uuid.uuid4().hex[:8]}" for _ in range(3)}
    for name in made:
        lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role,
            Handler="handler.main",
            Code={"ZipFile": code.getvalue()},
        )
    # moto answers list_functions in one page whatever MaxItems says: paging is tested on S3 below.
    run = steps(
        tmp_path,
        server,
        {
            "id": "all",
            "aws": {"service": "lambda", "action": "list_functions", "paginate": True, "region": REGION},
        },
    )
    listed = result_of(run, "all")
    assert made <= {f["FunctionName"] for f in listed["Functions"]}
    assert {f["FunctionName"] for f in listed["Functions"]} == {
        f["FunctionName"] for f in lam.list_functions()["Functions"]
    }
    assert listed["pages"] >= 1 and run.step("all")["status"] == "ok"


def test_s3_listing_pages_are_merged_and_bodies_made_json_safe(tmp_path, server):
    s3 = boto(server, "s3")
    bucket = f"rb-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    keys = sorted(f"k/{n:03d}" for n in range(35))
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    binary = os.urandom(64) + b"\xff\xfe"
    s3.put_object(Bucket=bucket, Key="bin", Body=binary)
    s3.put_object(Bucket=bucket, Key="text", Body="héllo".encode())
    page = {"Bucket": bucket, "Prefix": "k/", "PaginationConfig": {"PageSize": 10}}
    run = steps(
        tmp_path,
        server,
        {
            "id": "listed",
            "aws": {"service": "s3", "action": "list_objects_v2", "params": page, "paginate": True},
        },
        {
            "id": "one_page",
            "aws": {
                "service": "s3",
                "action": "list_objects_v2",
                "params": {"Bucket": bucket, "Prefix": "k/", "MaxKeys": 10},
            },
        },
        {
            "id": "text",
            "aws": {"service": "s3", "action": "get_object", "params": {"Bucket": bucket, "Key": "text"}},
        },
        {
            "id": "bin",
            "aws": {"service": "s3", "action": "get_object", "params": {"Bucket": bucket, "Key": "bin"}},
        },
    )
    listed = result_of(run, "listed")
    assert [o["Key"] for o in listed["Contents"]] == keys and listed["pages"] == 4
    assert "NextContinuationToken" not in listed
    assert len(result_of(run, "one_page")["Contents"]) == 10 and result_of(run, "one_page")["IsTruncated"]
    assert result_of(run, "text")["Body"] == "héllo"
    assert base64.b64decode(result_of(run, "bin")["Body"]) == binary  # not UTF-8: base64


# -- dry run, waiting, failures ---------------------------------------------------------------


def test_dry_run_asks_ec2_to_check_and_changes_nothing(tmp_path, server, image):
    tag = uuid.uuid4().hex
    params = {
        "ImageId": image,
        "MinCount": 1,
        "MaxCount": 1,
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "run", "Value": tag}]}],
    }
    run = steps(
        tmp_path,
        server,
        {"id": "launch", "aws": {"service": "ec2", "action": "run_instances", "params": params}},
        {"id": "look", "aws": {"service": "ec2", "action": "describe_instances"}},
        {
            "id": "other",
            "aws": {"service": "lambda", "action": "delete_function", "params": {"FunctionName": "x"}},
        },
        flags=("--dry-run",),
    )
    launch = run.step("launch")["result"]
    assert "DryRun check passed" in launch["dry_run"] and launch["changed"] is True
    look = run.step("look")["result"]  # a call that only reads is made, for later steps to plan with
    assert look["changed"] is False and "only reads" in look["dry_run"] and "Reservations" in look
    assert run.step("other")["result"]["verdict"] == "unknown"
    found = boto(server, "ec2").describe_instances(Filters=[{"Name": "tag:run", "Values": [tag]}])
    assert found["Reservations"] == []


def test_a_wait_stops_at_its_timeout_and_at_the_steps_timeout(tmp_path, server, image):
    ec2 = boto(server, "ec2")
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    never = {"waiter": "instance_terminated", "params": {"InstanceIds": [instance]}}
    # The two waits run side by side (a parallel group): each takes its full second.
    run = steps(
        tmp_path,
        server,
        {
            "parallel": [
                {
                    "id": "bounded",
                    "aws": {"service": "ec2", "wait": {**never, "delay": "200ms", "timeout": "1s"}},
                    "continue_on_error": True,
                },
                # The waiter's own delay is 15 s; the step's timeout must end the wait long before that.
                {
                    "id": "cancelled",
                    "aws": {"service": "ec2", "wait": never},
                    "timeout": "1s",
                    "continue_on_error": True,
                },
            ]
        },
        timeout=30,
    )
    bounded = one_line_error(run.step("bounded"))
    assert "still not there" in bounded and "instance_terminated" in bounded
    assert run.step("bounded")["result"]["waited"]["polls"] >= 2
    cancelled = run.step("cancelled")
    assert "timed out" in one_line_error(cancelled) and cancelled["result"]["waited"]["polls"] == 1
    ec2.terminate_instances(InstanceIds=[instance])


def test_failures_are_one_line_with_the_aws_code_or_a_suggestion(tmp_path, server):
    closed = "http://127.0.0.1:9"
    cases = {
        "service": {"service": "ec3", "action": "describe_instances"},
        "action": {"service": "ec2", "action": "describe_instance"},
        "waiter": {"service": "ec2", "wait": {"waiter": "instance_runing"}},
        "aws_code": {
            "service": "ec2",
            "action": "terminate_instances",
            "params": {"InstanceIds": ["i-0123456789abcdef0"]},
        },
        "params": {"service": "ec2", "action": "run_instances", "params": {"ImageId": "ami-1"}},
        "not_paged": {"service": "sts", "action": "get_caller_identity", "paginate": True},
        "refused": {"service": "sts", "action": "get_caller_identity", "endpoint_url": closed},
        "no_credentials": {"service": "sts", "action": "get_caller_identity"},
    }
    entries = [{"id": key, "aws": args, "continue_on_error": True} for key, args in cases.items()]
    # The keys are in the playbook's env only, so one step can hide them with empty values.
    entries[-1]["env"] = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    run = steps(tmp_path, server, *entries, env=NO_CREDENTIALS, book_env=keys)
    errors = {key: one_line_error(run.step(key)) for key in cases}
    assert "unknown AWS service 'ec3'" in errors["service"] and "did you mean 'ec2'" in errors["service"]
    assert "did you mean 'describe_instances'" in errors["action"]
    assert "did you mean 'instance_running'" in errors["waiter"]
    assert errors["aws_code"].startswith("ec2.terminate_instances failed: InvalidInstanceID.NotFound:")
    assert "invalid params" in errors["params"] and "MinCount" in errors["params"]
    assert "cannot be paginated" in errors["not_paged"]
    assert "cannot reach" in errors["refused"] and "connection refused" in errors["refused"]
    assert "no AWS credentials" in errors["no_credentials"]


def test_the_ebs_snapshots_example_works_as_shipped(tmp_path, server):
    ec2 = boto(server, "ec2")
    tag = uuid.uuid4().hex  # a tag value of this test's own, so other tests' volumes stay out
    tagged = [
        ec2.create_volume(
            AvailabilityZone=f"{REGION}a",
            Size=1,
            TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "Backup", "Value": tag}]}],
        )["VolumeId"]
        for _ in range(2)
    ]
    ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1)  # untagged: not snapshotted
    book = (REPO / "playbooks" / "ebs-snapshots.yml").read_text()
    run = play(tmp_path, book, "-e", f"tag_value={tag}", env={**CREDENTIALS, "AWS_ENDPOINT_URL": server.url})
    assert run.finished()["exit_code"] == 0, run.stderr
    snapshots = ec2.describe_snapshots(Filters=[{"Name": "tag:Backup", "Values": [tag]}])["Snapshots"]
    assert sorted(s["VolumeId"] for s in snapshots) == sorted(tagged)
    assert {s["State"] for s in snapshots} == {"completed"}
    assert run.step("completed")["result"]["waited"]["waiter"] == "snapshot_completed"
