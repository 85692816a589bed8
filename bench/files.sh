#!/usr/bin/env bash
# The file handlers (hash, copy, glob) against the plain tools, in one run.
#
#   bash bench/files.sh [REPEATS]
#
# Creates its data in a mktemp folder (removed on exit): a 1 GiB file, a tree of 5,000
# files of 4 KiB in 50 folders, and a tree of 100,000 empty files (10,000 of them .log)
# in 1,000 nested folders. Needs 5 GiB free there, or prints why and does nothing.
# Prints medians of REPEATS runs (default 3, after one warm-up run each; runs of the
# contenders are interleaved, so a busy moment hurts all alike):
#   - hash sha256 of the 1 GiB file (page cache warm) against `openssl dgst -sha256` and
#     `sha256sum`: GB/s (1 GB = 10^9 bytes), runbook/openssl   (target >= 0.95x);
#   - copy of the 1 GiB file to a new destination against `cp`: GB/s,
#     runbook/cp   (target >= 0.8x);
#   - copy of the 5,000-file tree into a new folder against `cp -r`: time,
#     runbook/cp   (target <= 2.5x); then the same copy again into the now existing,
#     unchanged folder: time, first/second   (target >= 3x);
#   - glob **/*.log over the 100,000-file tree against `find DIR -name '*.log'`: time,
#     step/find   (target <= 1.5x); and, for reference, against find printing each match's
#     size and mtime as glob reports them (-printf, a stat per match).
# Every runbook figure is given twice: the step's own duration (from the step_finished
# JSON event) and the whole `runbook play` process; the difference (start-up, loading,
# writing the events) is shown separately, next to the time of an empty playbook.
# Targets are checked on the step's duration; whole-process ratios are shown beside them.
# Exits 1 if a step fails or gives a wrong result (a missed target is only listed).
# The destination of a big copy is removed and the disk synced (untimed) before each run.
# With `ansible-playbook` on PATH, Ansible's copy of the 1 GiB file and its stat with a
# sha256 checksum are measured too (net of an empty play), with the Python beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS="${1:-3}"
source bench/_setup.sh  # sets PY and RUNBOOK

WORK="$(mktemp -d "${TMPDIR:-/tmp}/runbook-bench-files.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

NEED_KIB=$((5 * 1024 * 1024))
FREE_KIB="$(df -Pk "$WORK" | awk 'NR == 2 {print $4}')"
if [ "$FREE_KIB" -lt "$NEED_KIB" ]; then
    echo "bench/files.sh: only $((FREE_KIB / 1024)) MiB free in $(dirname "$WORK"); it needs 5 GiB" \
         "(a 1 GiB file, its copies and two trees). Nothing was run." >&2
    exit 0
fi
FREE_INODES="$(df -Pi "$WORK" | awk 'NR == 2 {print $4}')"
if [ "$FREE_INODES" != "-" ] && [ "$FREE_INODES" -lt 150000 ]; then
    echo "bench/files.sh: only $FREE_INODES inodes free in $(dirname "$WORK"); it needs 150,000." \
         "Nothing was run." >&2
    exit 0
fi

"$PY" - "$WORK" "$RUNBOOK" "$REPEATS" <<'PYEOF'
import json, os, shutil, statistics, subprocess, sys, time

work, runbook, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
GIB = 1024 ** 3
GB = 1e9
problems = []  # missed targets, repeated at the end
failures = []  # failed steps and wrong results: the script exits 1


class Failed(Exception):
    pass


# -- data ---------------------------------------------------------------------------------

def make_big(path):
    block = os.urandom(64 * 1024 * 1024)
    with open(path, "wb") as f:
        for _ in range(GIB // len(block)):
            f.write(block)


def make_tree_5k(top):
    for d in range(50):
        folder = os.path.join(top, f"d{d:02d}")
        os.makedirs(folder)
        for i in range(100):
            with open(os.path.join(folder, f"f{i:03d}.dat"), "wb") as f:
                f.write(os.urandom(4096))


def make_tree_100k(top):
    for a in range(10):
        for b in range(10):
            for c in range(10):
                folder = os.path.join(top, f"a{a}", f"b{b}", f"c{c}")
                os.makedirs(folder)
                for i in range(100):
                    name = f"f{i:02d}.log" if i % 10 == 0 else f"f{i:02d}.txt"
                    os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_WRONLY, 0o644))


start = time.perf_counter()
big = os.path.join(work, "big.bin")
tree5k = os.path.join(work, "tree5k")
tree100k = os.path.join(work, "tree100k")
out = os.path.join(work, "out")
os.makedirs(out)
make_big(big)
make_tree_5k(tree5k)
make_tree_100k(tree100k)
os.sync()
with open(big, "rb", buffering=0) as f:  # read once: the page cache is warm
    while f.read(16 * 1024 * 1024):
        pass
print(f"data created in {work} in {time.perf_counter() - start:.1f} s; "
      f"medians of {repeats} runs after one warm-up\n")


# -- running --------------------------------------------------------------------------------

def book(name, step):
    path = os.path.join(work, f"{name}.yml")
    with open(path, "w") as f:
        f.write(f"name: {name}\nsteps:\n  - {step}\n" if step else f"name: {name}\nsteps: []\n")
    return path


def wall(argv, env=None):
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        text = (proc.stderr.strip() or proc.stdout.strip())[-600:]
        raise Failed(f"`{' '.join(argv)}` exited {proc.returncode}: {text}")
    return took, proc.stdout


def play(path):
    """{wall, step, result} of a one-step playbook; Failed unless the step ends ok or changed."""
    took, stdout = wall_play(path)
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    finished = [e for e in events if e["event"] == "step_finished"]
    if len(finished) != 1 or finished[0]["status"] not in ("ok", "changed"):
        error = finished[0].get("error") if finished else "no step_finished event"
        raise Failed(f"runbook step failed: {error}")
    return {"wall": took, "step": finished[0]["duration"], "result": finished[0]["result"]}


def wall_play(path):
    start = time.perf_counter()
    proc = subprocess.run([runbook, "play", path, "--output", "json"], capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        errors = [e.get("error") for e in events if e.get("error")]
        raise Failed(f"runbook play {os.path.basename(path)} exited {proc.returncode}: "
                     f"{errors[0] if errors else proc.stderr.strip()[-600:]}")
    return took, proc.stdout


def interleaved(contenders, warm_up=True):
    """Median (and the runs' range, as KEY_range) of each figure each contender's
    function returns, the contenders' runs interleaved."""
    samples = {name: [] for name in contenders}
    for rep in range(-1 if warm_up else 0, repeats):
        for name, run in contenders.items():
            figures = run()
            if rep >= 0:
                samples[name].append(figures)
    medians = {}
    for name, runs in samples.items():
        keys = [k for k in runs[0] if k not in ("result", "out")]
        medians[name] = {k: statistics.median(r[k] for r in runs) for k in keys}
        medians[name].update({f"{k}_range": (min(r[k] for r in runs), max(r[k] for r in runs)) for k in keys})
        medians[name]["result"] = runs[-1].get("result")
    return medians


def fresh(path):
    """Remove a destination and write back dirty pages (untimed), before a copy."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
    os.sync()


# -- printing -------------------------------------------------------------------------------

def heading(text):
    print(text)
    print("-" * len(text))


WIDTH = 46


def line(label, m, key="wall", size=None, note=""):
    """LABEL  median s  [GB/s]  (runs min-max s)  NOTE"""
    seconds = m[key]
    rate_text = f"{size / seconds / GB:6.2f} GB/s" if size else " " * 11
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


# -- the measurements -----------------------------------------------------------------------

empty = interleaved({"empty": lambda: {"wall": wall_play(book("empty", None))[0]}})["empty"]["wall"]
print(f"runbook play of an empty playbook (start-up alone): {empty * 1000:.1f} ms\n")


def hash_big():
    m = interleaved({
        "runbook": lambda: play(book("hash", f"hash: {{path: {big}}}")),
        "openssl": lambda: dict(zip(("wall", "out"), wall(["openssl", "dgst", "-sha256", big]))),
        "sha256sum": lambda: dict(zip(("wall", "out"), wall(["sha256sum", big]))),
    })
    # The digests must agree (the last run's outputs).
    digest = m["runbook"]["result"]["digest"]
    openssl = wall(["openssl", "dgst", "-sha256", "-r", big])[1].split()[0]
    if digest != openssl:
        raise Failed(f"runbook's digest {digest} is not openssl's {openssl}")
    runbook_lines("hash", m["runbook"], GIB)
    line("openssl dgst -sha256", m["openssl"], size=GIB)
    line("sha256sum", m["sha256sum"], size=GIB)
    ratio("runbook/openssl throughput (step)", m["openssl"]["wall"] / m["runbook"]["step"], 0.95, True)
    ratio("runbook/openssl throughput (whole)", m["openssl"]["wall"] / m["runbook"]["wall"], 0.95, True, False)
    ratio("runbook/sha256sum throughput (step)", m["sha256sum"]["wall"] / m["runbook"]["step"], None, True)
    return digest


def copy_big():
    rb_dest, cp_dest = os.path.join(out, "big.runbook"), os.path.join(out, "big.cp")
    copy_book = book("copybig", f"copy: {{src: {big}, dest: {rb_dest}}}")

    def rb():
        fresh(rb_dest)
        return play(copy_book)

    def cp():
        fresh(cp_dest)
        return {"wall": wall(["cp", big, cp_dest])[0]}

    m = interleaved({"runbook": rb, "cp": cp})
    result = m["runbook"]["result"]
    if result["copied"] != 1 or result["bytes"] != GIB:
        raise Failed(f"runbook copied {result['copied']} files, {result['bytes']} bytes")
    if subprocess.run(["cmp", "-s", big, rb_dest]).returncode != 0:
        raise Failed(f"{rb_dest} differs from {big}")
    fresh(rb_dest)
    fresh(cp_dest)
    runbook_lines("copy", m["runbook"], GIB)
    line("cp", m["cp"], size=GIB)
    ratio("runbook/cp throughput (step)", m["cp"]["wall"] / m["runbook"]["step"], 0.8, True)
    ratio("runbook/cp throughput (whole)", m["cp"]["wall"] / m["runbook"]["wall"], 0.8, True, False)


def copy_tree():
    rb_dest, cp_dest = os.path.join(out, "tree.runbook"), os.path.join(out, "tree.cp")
    copy_book = book("copytree", f"copy: {{src: {tree5k}/, dest: {rb_dest}/}}")

    def rb():
        fresh(rb_dest)
        first = play(copy_book)
        again = play(copy_book)
        if first["result"]["copied"] != 5000:
            raise Failed(f"first run copied {first['result']['copied']} files, not 5000")
        if again["result"]["copied"] != 0 or again["result"]["unchanged"] != 5000:
            raise Failed(f"second run copied {again['result']['copied']} files, "
                         f"left {again['result']['unchanged']} unchanged; expected 0 and 5000")
        return {"wall": first["wall"], "step": first["step"], "wall2": again["wall"], "step2": again["step"]}

    def cp():
        fresh(cp_dest)
        return {"wall": wall(["cp", "-r", tree5k, cp_dest])[0]}

    m = interleaved({"runbook": rb, "cp": cp})
    if subprocess.run(["diff", "-r", "-q", tree5k, rb_dest], capture_output=True).returncode != 0:
        raise Failed(f"{rb_dest} differs from {tree5k}")
    r = m["runbook"]
    runbook_lines("copy, new folder", r)
    line("cp -r", m["cp"])
    ratio("runbook/cp -r time (step)", r["step"] / m["cp"]["wall"], 2.5, False)
    ratio("runbook/cp -r time (whole)", r["wall"] / m["cp"]["wall"], 2.5, False, False)
    runbook_lines("copy again, unchanged", r, step_key="step2", wall_key="wall2")
    ratio("first/second run speed-up (step)", r["step"] / r["step2"], 3, True)
    ratio("first/second run speed-up (whole)", r["wall"] / r["wall2"], 3, True, False)


def glob_tree():
    glob_book = book("glob", f'glob: {{pattern: "**/*.log", root: {tree100k}}}')
    # glob also reports each match's size and mtime (a stat of each): find does that with -printf.
    with_stat = ["find", tree100k, "-name", "*.log", "-printf", "%s %T@ %p\\n"]
    m = interleaved({
        "runbook": lambda: play(glob_book),
        "find": lambda: dict(zip(("wall", "out"), wall(["find", tree100k, "-name", "*.log"]))),
        "find_stat": lambda: dict(zip(("wall", "out"), wall(with_stat))),
    })
    count = m["runbook"]["result"]["count"]
    found = len(wall(["find", tree100k, "-name", "*.log"])[1].splitlines())
    if count != 10000 or found != 10000:
        raise Failed(f"runbook matched {count} files and find {found}; expected 10,000")
    runbook_lines("glob", m["runbook"])
    line("find -name '*.log'", m["find"])
    line("find -name '*.log' -printf '%s %T@ %p'", m["find_stat"], note="(sizes and mtimes too, as glob)")
    ratio("runbook/find time (step)", m["runbook"]["step"] / m["find"]["wall"], 1.5, False)
    ratio("runbook/find time (whole)", m["runbook"]["wall"] / m["find"]["wall"], 1.5, False, False)
    ratio("runbook/find -printf time (step)", m["runbook"]["step"] / m["find_stat"]["wall"], None, False)


digest = [None]
section("1. hash sha256 of a 1 GiB file (page cache warm)", lambda: digest.__setitem__(0, hash_big()))
section("2. copy of a 1 GiB file to a new destination", copy_big)
section("3. copy of 5,000 files of 4 KiB in 50 folders", copy_tree)
section("4. glob **/*.log over 100,000 files (10,000 .log) in 1,000 folders", glob_tree)


# -- Ansible, when installed -----------------------------------------------------------------

def ansible_figures(exe):
    interpreter = os.path.join(os.path.dirname(exe), "python3")
    temp = os.path.join(work, "ansible-tmp")
    os.makedirs(temp, exist_ok=True)
    env = {**os.environ, "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
           "ANSIBLE_LOCAL_TEMP": temp, "ANSIBLE_REMOTE_TMP": temp, "ANSIBLE_RETRY_FILES_ENABLED": "false"}

    def playbook(name, tasks):
        path = os.path.join(work, f"{name}.yml")
        with open(path, "w") as f:
            f.write("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:"
                    + ("".join(f"\n    - {t}" for t in tasks) if tasks else " []") + "\n")
        return path

    def ansible(path, *extra):
        return wall([exe, "-i", "localhost,", "-e", f"ansible_python_interpreter={interpreter}", *extra, path],
                    env=env)[0]

    dest = os.path.join(out, "big.ansible")
    expected = digest[0] or wall(["openssl", "dgst", "-sha256", "-r", big])[1].split()[0]
    empty_play = playbook("a-empty", [])
    copy_play = playbook("a-copy", [f"copy: {{src: {big}, dest: {dest}}}"])
    stat_play = playbook("a-stat", [
        f"stat: {{path: {big}, get_checksum: true, checksum_algorithm: sha256}}\n      register: st",
        "assert: {that: st.stat.checksum == expected}",
    ])

    def copy_run():
        fresh(dest)
        return {"wall": ansible(copy_play)}

    m = interleaved({
        "empty": lambda: {"wall": ansible(empty_play)},
        "copy": copy_run,
        "stat": lambda: {"wall": ansible(stat_play, "-e", f"expected={expected}")},
    }, warm_up=False)
    if os.path.getsize(dest) != GIB:
        raise Failed(f"Ansible's copy {dest} is {os.path.getsize(dest)} bytes")
    fresh(dest)
    base = m["empty"]["wall"]
    line("ansible-playbook, empty play", m["empty"])
    for label, key in (("ansible copy", "copy"), ("ansible stat, sha256", "stat")):
        line(f"{label}: whole process", m[key], size=GIB)
        line(f"{label}: net of the empty play", {"wall": m[key]["wall"] - base}, size=GIB, note="(medians' difference)")


exe = shutil.which("ansible-playbook")
if exe:
    section(f"5. Ansible ({exe}), 1 GiB file", lambda: ansible_figures(exe))
else:
    print("ansible-playbook not on PATH: the Ansible comparison was left out "
          "(pip install ansible-core, and put its bin folder on PATH, to add it)\n")

for title, items in (("Missed targets:", problems), ("FAILED (exit status 1):", failures)):
    if items:
        print(title)
        for item in items:
            print(f"  - {item}")
if not problems and not failures:
    print("Every runbook step succeeded and met its target.")
sys.exit(1 if failures else 0)
PYEOF
