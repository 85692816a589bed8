#!/usr/bin/env bash
# The toolbox handlers (grep, delete, move, process, system) against the plain tools.
#
#   bash bench/toolbox.sh [REPEATS]
#
# Creates its data in a mktemp folder (removed on exit): a 256 MiB log of 3.3 million
# lines, and trees of 20,000 small files (half of them 40 days old). Needs 1 GiB free.
# Prints medians of REPEATS runs (default 3, after a warm-up; contenders interleaved):
#   - grep: count the lines matching a word, and a regex, in the log, against `grep -c`
#     (the page cache warm): step/grep   (target <= 12x). GNU grep scans with SIMD and
#     counts no lines; runbook finds the text a match needs with bytes.find, but counts
#     every line (bytes.count, half its time) for line numbers, since_line and last_line;
#     the same with tail_bytes: 1MiB (only the end read, no lines counted): time;
#   - delete: the 10,000 old files of 20,000 (`*.log`, older_than: 30d) against
#     `find DIR -name '*.log' -mtime +30 -delete`: step/find   (target <= 2x);
#   - move: 10,000 files matched by a glob into another folder against `mv DIR/*.log DEST/`:
#     step/mv   (target <= 2.5x);
#   - process: find processes by name against `pgrep -x`: time   (target: step <= 60 ms);
#   - system: the step's time beyond its CPU sampling interval (target: <= 50 ms).
# Every runbook figure is the step's own duration (the step_finished JSON event); the whole
# process (start-up, loading, events) is shown beside it. Exits 1 if a step fails or gives
# a result that differs from the plain tool's (a missed target is only listed).
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS="${1:-3}"
source bench/_setup.sh  # sets PY and RUNBOOK

WORK="$(mktemp -d "${TMPDIR:-/tmp}/runbook-bench-toolbox.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
FREE_KIB="$(df -Pk "$WORK" | awk 'NR == 2 {print $4}')"
if [ "$FREE_KIB" -lt $((1024 * 1024)) ]; then
    echo "bench/toolbox.sh: only $((FREE_KIB / 1024)) MiB free in $(dirname "$WORK"); it needs 1 GiB." \
         "Nothing was run." >&2
    exit 0
fi

"$PY" - "$WORK" "$RUNBOOK" "$REPEATS" <<'PYEOF'
import json, os, random, shutil, statistics, subprocess, sys, time

work, runbook, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
problems, failures = [], []
DAY = 86400


def make_log(path, size):
    rng = random.Random(7)
    words = ["INFO", "DEBUG", "user", "request", "served", "in", "ms", "db", "cache", "hit", "miss"]
    lines = []
    for n in range(200_000):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))
        if n % 997 == 0:
            text += " ERROR timeout talking to db"
        lines.append(f"2024-05-01T12:{n % 60:02d}:00 {text}")
    block = ("\n".join(lines) + "\n").encode()
    with open(path, "wb") as f:
        written = 0
        while written < size:
            f.write(block)
            written += len(block)


def make_tree(top, count):
    old = time.time() - 40 * DAY
    for d in range(20):
        folder = os.path.join(top, f"d{d:02d}")
        os.makedirs(folder, exist_ok=True)
    for i in range(count):
        path = os.path.join(top, f"d{i % 20:02d}", f"f{i:05d}.log")
        with open(path, "wb") as f:
            f.write(b"x" * 100)
        if i % 2 == 0:
            os.utime(path, (old, old))


def book(name, step):
    path = os.path.join(work, f"{name}.yml")
    with open(path, "w") as f:
        json.dump({"name": name, "steps": [{"id": "s", **step}]}, f)
    return path


def play(path):
    start = time.perf_counter()
    proc = subprocess.run([runbook, "play", path, "--output", "json"], capture_output=True, text=True)
    took = time.perf_counter() - start
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    finished = [e for e in events if e["event"] == "step_finished"]
    if len(finished) != 1 or finished[0]["status"] not in ("ok", "changed"):
        error = finished[0].get("error") if finished else proc.stderr[-300:]
        failures.append(f"{path}: {error}")
        return {"wall": took, "step": float("nan"), "result": {}}
    return {"wall": took, "step": finished[0]["duration"], "result": finished[0]["result"]}


def wall(argv, **kwargs):
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    return time.perf_counter() - start, proc


def median(values):
    return statistics.median(values)


def check(label, ratio, target):
    mark = "ok" if ratio <= target else "MISSED"
    if ratio > target:
        problems.append(f"{label}: {ratio:.2f}x (target <= {target}x)")
    return mark


# -- grep --------------------------------------------------------------------------------------
log = os.path.join(work, "app.log")
make_log(log, 256 * 1024 * 1024)
print(f"grep over a {os.path.getsize(log) / 2**20:.0f} MiB log")
for label, pattern, flags, target in (("word", "ERROR", [], 12.0), ("regex", r"ERROR.*db$", ["-E"], 12.0)):
    path = book(f"grep-{label}", {"grep": {"path": log, "pattern": pattern}})
    ours, theirs = [], []
    play(path)
    for _ in range(repeats):
        ours.append(play(path))
        took, proc = wall(["grep", "-c", *flags, pattern, log])
        theirs.append((took, proc))
    expected = int(theirs[-1][1].stdout)
    if ours[-1]["result"].get("count") != expected:
        failures.append(f"grep {label}: runbook counted {ours[-1]['result'].get('count')}, grep -c {expected}")
    step = median([o["step"] for o in ours])
    whole = median([o["wall"] for o in ours])
    plain = median([t[0] for t in theirs])
    ratio = step / plain
    print(f"  {label:6} step {step * 1000:7.0f} ms  (process {whole * 1000:5.0f} ms)  grep -c {plain * 1000:6.0f} ms"
          f"  step/grep {ratio:5.2f}x  {check('grep ' + label, ratio, target)}")
path = book("grep-tail", {"grep": {"path": log, "pattern": "ERROR", "tail_bytes": "1MiB"}})
tail = median([play(path)["step"] for _ in range(repeats)])
print(f"  tail_bytes 1MiB: step {tail * 1000:.1f} ms")

# -- delete and move ------------------------------------------------------------------------------
print("delete of 10,000 old files among 20,000")
ours, theirs = [], []
for round_ in range(repeats):
    a, b = os.path.join(work, f"del-a{round_}"), os.path.join(work, f"del-b{round_}")
    make_tree(a, 20_000)
    make_tree(b, 20_000)
    ours.append(play(book(f"delete{round_}", {"delete": {"path": f"{a}/**/*.log", "older_than": "30d"}})))
    took, _ = wall(["find", b, "-name", "*.log", "-mtime", "+30", "-delete"])
    theirs.append(took)
    left_a = sum(len(files) for _, _, files in os.walk(a))
    left_b = sum(len(files) for _, _, files in os.walk(b))
    if left_a != left_b or ours[-1]["result"].get("count") != 10_000:
        failures.append(f"delete: {left_a} files left by runbook, {left_b} by find")
    shutil.rmtree(a)
    shutil.rmtree(b)
step, plain = median([o["step"] for o in ours]), median(theirs)
print(f"  step {step * 1000:7.0f} ms  (process {median([o['wall'] for o in ours]) * 1000:5.0f} ms)"
      f"  find -delete {plain * 1000:6.0f} ms  step/find {step / plain:5.2f}x  {check('delete', step / plain, 2.0)}")

print("move of 10,000 files matched by a glob")
ours, theirs = [], []
for round_ in range(repeats):
    a, b = os.path.join(work, f"mv-a{round_}"), os.path.join(work, f"mv-b{round_}")
    for top in (a, b):
        os.makedirs(top)
        for i in range(10_000):
            with open(os.path.join(top, f"f{i:05d}.log"), "wb") as f:
                f.write(b"y" * 100)
    ours.append(play(book(f"move{round_}", {"move": {"src": f"{a}/*.log", "dest": f"{a}-dest/"}})))
    os.makedirs(f"{b}-dest")
    took, _ = wall(f"mv {b}/*.log {b}-dest/", shell=True)
    theirs.append(took)
    if len(os.listdir(f"{a}-dest")) != len(os.listdir(f"{b}-dest")) or os.listdir(a):
        failures.append("move: runbook and mv moved different files")
    for top in (a, b, f"{a}-dest", f"{b}-dest"):
        shutil.rmtree(top)
step, plain = median([o["step"] for o in ours]), median(theirs)
print(f"  step {step * 1000:7.0f} ms  (process {median([o['wall'] for o in ours]) * 1000:5.0f} ms)"
      f"  mv {plain * 1000:6.0f} ms  step/mv {step / plain:5.2f}x  {check('move', step / plain, 2.5)}")

# -- process and system --------------------------------------------------------------------------
name = os.path.basename(sys.executable)
path = book("process", {"process": {"name": name, "min_count": 0}})
ours = [play(path) for _ in range(repeats)]
theirs = [wall(["pgrep", "-x", name])[0] for _ in range(repeats)]
step = median([o["step"] for o in ours])
print(f"process by name: step {step * 1000:.0f} ms, pgrep -x {median(theirs) * 1000:.0f} ms"
      f"  {'ok' if step <= 0.06 else 'MISSED'}")
if step > 0.06:
    problems.append(f"process: {step * 1000:.0f} ms (target <= 60 ms)")
path = book("system", {"system": {"interval": "100ms", "paths": ["/"]}})
extra = median([play(path)["step"] for _ in range(repeats)]) - 0.1
print(f"system: {extra * 1000:.0f} ms beyond the 100 ms CPU sample  {'ok' if extra <= 0.05 else 'MISSED'}")
if extra > 0.05:
    problems.append(f"system: {extra * 1000:.0f} ms beyond its interval (target <= 50 ms)")

if problems:
    print("\nmissed targets:\n  " + "\n  ".join(problems))
if failures:
    print("\nFAILURES:\n  " + "\n  ".join(failures))
    sys.exit(1)
PYEOF
