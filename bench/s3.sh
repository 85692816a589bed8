#!/usr/bin/env bash
# s3_upload against the AWS CLI, on the same local S3 server, in one run.
#
#   bash bench/s3.sh [REPEATS]
#
# Starts moto's S3 server (`python -m moto.server`) on a free port of 127.0.0.1 (stopped on
# exit), with dummy credentials, and creates its data in a mktemp folder (removed on exit):
# 1,000 files of 8 KiB and one file of 256 MiB. Needs 1 GiB free there and 2 GiB of memory
# (moto keeps objects in memory; each one is deleted after its run). Prints medians of
# REPEATS runs (default 3, after one warm-up run each; runs of the contenders are
# interleaved, so a busy moment hurts all alike), each run into a new bucket:
#   - 1,000 files of 8 KiB: `aws s3 cp --recursive` against runbook's s3_upload of the folder:
#     time, runbook/aws   (target <= 1x: at least as fast);
#   - the same upload again, unchanged: first/second run   (target >= 5x);
#   - one 256 MiB file: `aws s3 cp` against s3_upload: MB/s, runbook/aws throughput
#     (target >= 0.9x).
# Every runbook figure is given twice: the step's own duration (from the step_finished JSON
# event) and the whole `runbook play` process; the AWS CLI's is its whole process, shown
# beside the time of `aws s3 ls` of an empty bucket (its start-up and one request).
# Targets are checked on the step's duration; whole-process ratios are shown beside them.
# Exits 1 if a step fails or what landed is wrong (a missed target is only listed).
# The AWS CLI is installed with pip if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS="${1:-3}"
source bench/_setup.sh  # sets PY and RUNBOOK

if ! command -v aws >/dev/null; then
    echo "bench/s3.sh: installing the AWS CLI (pip install awscli)" >&2
    "$PY" -m pip install --quiet awscli
fi
AWS="$(command -v aws)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/runbook-bench-s3.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then  # TERM, and KILL if it is still there after 5 s
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

FREE_KIB="$(df -Pk "$WORK" | awk 'NR == 2 {print $4}')"
if [ "$FREE_KIB" -lt $((1024 * 1024)) ]; then
    echo "bench/s3.sh: only $((FREE_KIB / 1024)) MiB free in $(dirname "$WORK"); it needs 1 GiB. Nothing was run." >&2
    exit 0
fi

PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$PY" -m moto.server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
SERVER_PID=$!

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE="$WORK/no-aws-config"
export AWS_SHARED_CREDENTIALS_FILE="$WORK/no-aws-credentials"
export RUNBOOK_HOME="$WORK/runbook-home"  # digest records and history stay in the bench's folder

"$PY" - "$WORK" "$RUNBOOK" "$AWS" "$REPEATS" "http://127.0.0.1:$PORT" <<'PYEOF'
import hashlib, json, os, statistics, subprocess, sys, time, uuid

import boto3

work, runbook, aws, repeats, endpoint = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
MiB = 1024 * 1024
BIG = 256 * MiB
MB = 1e6
problems = []  # missed targets, repeated at the end
failures = []  # failed steps and wrong results: the script exits 1


class Failed(Exception):
    pass


s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
deadline = time.monotonic() + 30
while True:
    try:
        s3.list_buckets()
        break
    except Exception:
        if time.monotonic() > deadline:
            sys.exit(f"bench/s3.sh: the moto server at {endpoint} did not start; see {work}/moto.log")
        time.sleep(0.2)

# -- data -------------------------------------------------------------------------------------

start = time.perf_counter()
small = os.path.join(work, "small")
os.makedirs(small)
for i in range(1000):
    with open(os.path.join(small, f"f{i:04d}.dat"), "wb") as f:
        f.write(os.urandom(8192))
big = os.path.join(work, "big.bin")
with open(big, "wb") as f:
    block = os.urandom(64 * MiB)
    for _ in range(BIG // len(block)):
        f.write(block)
with open(big, "rb") as f:
    big_sha256 = hashlib.sha256(f.read()).hexdigest()
print(f"moto server at {endpoint}; data created in {work} in {time.perf_counter() - start:.1f} s; "
      f"medians of {repeats} runs after one warm-up\n")


# -- running ------------------------------------------------------------------------------------

def new_bucket():
    name = f"bench-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def empty(bucket):
    """Delete a bucket's objects (untimed), so moto's memory does not grow run after run."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def wall(argv):
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        text = (proc.stderr.strip() or proc.stdout.strip())[-600:]
        raise Failed(f"`{' '.join(argv)}` exited {proc.returncode}: {text}")
    return took


def book(name, step):
    path = os.path.join(work, f"{name}.yml")
    with open(path, "w") as f:
        f.write(f"name: {name}\nsteps:\n  - {json.dumps(step)}\n")
    return path


def play(path):
    """{wall, step, result} of a one-step playbook; Failed unless the step ends ok or changed."""
    start = time.perf_counter()
    proc = subprocess.run([runbook, "play", path, "--output", "json"], capture_output=True, text=True)
    took = time.perf_counter() - start
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    finished = [e for e in events if e["event"] == "step_finished"]
    if proc.returncode != 0 or len(finished) != 1 or finished[0]["status"] not in ("ok", "changed"):
        error = finished[0].get("error") if finished else proc.stderr.strip()[-600:]
        raise Failed(f"runbook play {os.path.basename(path)} exited {proc.returncode}: {error}")
    return {"wall": took, "step": finished[0]["duration"], "result": finished[0]["result"]}


def upload_step(src, bucket, **more):
    return {"s3_upload": {"src": src, "bucket": bucket, "endpoint_url": endpoint, **more}}


def interleaved(contenders, warm_up=True):
    """Median (and the runs' range, as KEY_range) of each figure each contender's function
    returns, the contenders' runs interleaved."""
    samples = {name: [] for name in contenders}
    for rep in range(-1 if warm_up else 0, repeats):
        for name, run in contenders.items():
            figures = run()
            if rep >= 0:
                samples[name].append(figures)
    medians = {}
    for name, runs in samples.items():
        keys = [k for k in runs[0] if k != "result"]
        medians[name] = {k: statistics.median(r[k] for r in runs) for k in keys}
        medians[name].update({f"{k}_range": (min(r[k] for r in runs), max(r[k] for r in runs)) for k in keys})
    return medians


# -- printing -------------------------------------------------------------------------------------

def heading(text):
    print(text)
    print("-" * len(text))


WIDTH = 46


def line(label, m, key="wall", size=None, note=""):
    """LABEL  median s  [MB/s]  (runs min-max s)  NOTE"""
    seconds = m[key]
    rate_text = f"{size / seconds / MB:7.1f} MB/s" if size else " " * 12
    runs = ""
    if f"{key}_range" in m and repeats > 1:
        low, high = m[f"{key}_range"]
        runs = f"(runs {low:.3f}-{high:.3f})"
    print(f"  {label:{WIDTH}s} {seconds:7.3f} s {rate_text}  {runs:20s} {note}".rstrip())


def runbook_lines(label, m, size=None, step_key="step", wall_key="wall"):
    step, whole = m[step_key], m[wall_key]
    line(f"runbook {label}: step", m, step_key, size)
    line(f"runbook {label}: whole process", m, wall_key, size,
         f"outside the step {whole - step:.3f} s ({(whole - step) / whole:.0%})")


def ratio(label, value, target, higher_is_better, checked=True):
    if target is None:
        print(f"  {label:{WIDTH}s} {value:7.2f}x")
        return
    meets = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    verdict = ("meets" if meets else "MISSES") if checked else ("would meet" if meets else "would miss")
    print(f"  {label:{WIDTH}s} {value:7.2f}x   target {sign} {target}x: {verdict}")
    if checked and not meets:
        problems.append(f"{label}: {value:.2f}x, target {sign} {target}x")


def section(title, body):
    heading(title)
    try:
        body()
    except Failed as exc:
        print(f"  FAILED: {exc}")
        failures.append(f"{title}: {exc}")
    print()


# -- the measurements -------------------------------------------------------------------------------

empty_bucket = new_bucket()
cli_ls = interleaved({"ls": lambda: {"wall": wall([aws, "--endpoint-url", endpoint, "s3", "ls",
                                                    f"s3://{empty_bucket}"])}})["ls"]
empty_book = os.path.join(work, "empty.yml")
with open(empty_book, "w") as f:
    f.write("name: empty\nsteps: []\n")
rb_empty = interleaved({"empty": lambda: {"wall": wall([runbook, "play", empty_book, "--output", "json"])}})["empty"]
print(f"aws s3 ls of an empty bucket (start-up and one request): {cli_ls['wall'] * 1000:.0f} ms")
print(f"runbook play of an empty playbook (start-up alone): {rb_empty['wall'] * 1000:.0f} ms\n")


def small_files():
    def rb():
        bucket = new_bucket()
        path = book("small", upload_step(small, bucket, prefix="p/"))
        first = play(path)
        again = play(path)
        count = len(s3.list_objects_v2(Bucket=bucket, Prefix="p/").get("Contents", []))
        if len(first["result"]["uploaded"]) != 1000 or count != 1000:
            raise Failed(f"first run uploaded {len(first['result']['uploaded'])} files; the bucket holds {count}")
        if again["result"]["uploaded"] or again["result"]["unchanged"] != 1000:
            raise Failed(f"second run uploaded {len(again['result']['uploaded'])} files, "
                         f"left {again['result']['unchanged']} unchanged; expected 0 and 1000")
        empty(bucket)
        return {"wall": first["wall"], "step": first["step"], "wall2": again["wall"], "step2": again["step"]}

    def cli():
        bucket = new_bucket()
        took = wall([aws, "--endpoint-url", endpoint, "s3", "cp", "--recursive", "--quiet", small, f"s3://{bucket}/p/"])
        count = len(s3.list_objects_v2(Bucket=bucket, Prefix="p/").get("Contents", []))
        if count != 1000:
            raise Failed(f"the AWS CLI left {count} objects, not 1000")
        empty(bucket)
        return {"wall": took}

    m = interleaved({"runbook": rb, "aws": cli})
    r = m["runbook"]
    runbook_lines("s3_upload, 1,000 new files", r)
    line("aws s3 cp --recursive", m["aws"])
    ratio("runbook/aws time (step)", r["step"] / m["aws"]["wall"], 1.0, False)
    ratio("runbook/aws time (whole)", r["wall"] / m["aws"]["wall"], 1.0, False, False)
    runbook_lines("s3_upload again, unchanged", r, step_key="step2", wall_key="wall2")
    ratio("first/second run speed-up (step)", r["step"] / r["step2"], 5, True)
    ratio("first/second run speed-up (whole)", r["wall"] / r["wall2"], 5, True, False)


def big_file():
    def rb():
        bucket = new_bucket()
        got = play(book("big", upload_step(big, bucket, key="big.bin")))
        head = s3.head_object(Bucket=bucket, Key="big.bin")
        if head["ContentLength"] != BIG or head["Metadata"].get("sha256") != big_sha256:
            raise Failed(f"runbook's object is {head['ContentLength']} bytes, sha256 {head['Metadata'].get('sha256')}")
        empty(bucket)
        return {"wall": got["wall"], "step": got["step"]}

    def cli():
        bucket = new_bucket()
        took = wall([aws, "--endpoint-url", endpoint, "s3", "cp", "--quiet", big, f"s3://{bucket}/big.bin"])
        if s3.head_object(Bucket=bucket, Key="big.bin")["ContentLength"] != BIG:
            raise Failed("the AWS CLI's object has the wrong size")
        empty(bucket)
        return {"wall": took}

    m = interleaved({"runbook": rb, "aws": cli})
    runbook_lines("s3_upload", m["runbook"], BIG)
    line("aws s3 cp", m["aws"], size=BIG)
    ratio("runbook/aws throughput (step)", m["aws"]["wall"] / m["runbook"]["step"], 0.9, True)
    ratio("runbook/aws throughput (whole)", m["aws"]["wall"] / m["runbook"]["wall"], 0.9, True, False)


section("1. 1,000 files of 8 KiB, then the same again unchanged", small_files)
section("2. one file of 256 MiB", big_file)

for title, items in (("Missed targets:", problems), ("FAILED (exit status 1):", failures)):
    if items:
        print(title)
        for item in items:
            print(f"  - {item}")
if not problems and not failures:
    print("Every runbook step succeeded and met its target.")
sys.exit(1 if failures else 0)
PYEOF
