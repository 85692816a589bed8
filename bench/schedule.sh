#!/usr/bin/env bash
# The scheduler under load: N playbooks scheduled `every 1 second`, for SECONDS seconds.
#
#   bash bench/schedule.sh [PLAYBOOKS] [SECONDS] [SCHEDULE]   (default 100 playbooks, 60 s)
#
# SCHEDULE (default "every 1 second") may be any schedule: "* * * * *" makes every playbook
# due at the same instant each minute (a burst), the worst case for start-time drift.
#
# Each playbook runs one `shell: "true"` step. Reports, from the daemon's JSON log and the
# history it leaves:
#   - start-time drift (actual start minus the time the run was due): median, p99, max;
#   - the daemon's peak RSS (sampled every 0.2 s), and the fork server's;
#   - runs started, skipped (a run still going when the next was due, overlap: skip) and
#     recorded: no run lost means every start has a finished history row and every skip
#     a skipped row, and none is left `running`.
# The history lives in a temporary RUNBOOK_HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
PLAYBOOKS="${1:-100}"
SECONDS_TO_RUN="${2:-60}"
SCHEDULE="${3:-every 1 second}"
source bench/_setup.sh  # sets PY and RUNBOOK
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PY" - "$WORK" "$RUNBOOK" "$PLAYBOOKS" "$SECONDS_TO_RUN" "$SCHEDULE" <<'PYEOF'
import json, os, signal, sqlite3, statistics, subprocess, sys, threading, time

import psutil

work, runbook, count, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
schedule = sys.argv[5]
home = os.path.join(work, "home")
files = []
for n in range(count):
    path = os.path.join(work, f"p{n:03d}.yml")
    with open(path, "w") as f:
        f.write(f"name: p{n:03d}\nschedule: {json.dumps(schedule)}\nsteps:\n  - shell: \"true\"\n")
    files.append(path)

env = {**os.environ, "RUNBOOK_HOME": home}
log_path = os.path.join(work, "daemon.log")
with open(log_path, "w") as log:
    daemon = subprocess.Popen([runbook, "schedule", *files, "--log-format", "json", "--grace", "30"],
                              stderr=log, stdout=subprocess.DEVNULL, env=env, cwd=work)
peak = {"daemon": 0, "launcher": 0}
stop = threading.Event()


def sample():
    proc = psutil.Process(daemon.pid)
    while not stop.wait(0.2):
        try:
            peak["daemon"] = max(peak["daemon"], proc.memory_info().rss)
            for child in proc.children():
                if "runner.launcher" in " ".join(child.cmdline()):
                    peak['launcher'] = max(peak['launcher'], child.memory_info().rss)
        except psutil.Error:
            pass


sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
cpu_before = psutil.cpu_times()
time.sleep(seconds)
own_cpu = {}
try:  # CPU seconds of the daemon and of the launcher (the runs' CPU is the rest)
    for name, proc in [("daemon", psutil.Process(daemon.pid)), *[("launcher", c) for c in psutil.Process(daemon.pid).children()
                                                                 if "runner.launcher" in " ".join(c.cmdline())]]:
        times = proc.cpu_times()
        own_cpu[name] = times.user + times.system
        if name == "launcher":  # the runs it forked and reaped
            own_cpu["runs"] = times.children_user + times.children_system
except psutil.Error:
    pass
stopped_at = time.time()
daemon.send_signal(signal.SIGTERM)
code = daemon.wait(120)
stop.set()
sampler.join()
cpu_after = psutil.cpu_times()

events = [json.loads(line) for line in open(log_path) if line.startswith("{")]
started = [e for e in events if e["event"] == "run_started"]
finished = [e for e in events if e["event"] == "run_finished"]
skipped = [e for e in events if e["event"] == "skipped"]
drifts = sorted(e["drift"] * 1000 for e in started)
with sqlite3.connect(os.path.join(home, "history.db")) as db:
    rows = dict(db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
recorded = sum(n for status, n in rows.items() if status not in ("skipped", "running"))
busy = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("user", "system", "nice"))


def pct(values, q):
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


print(f"{count} playbooks, schedule {schedule!r}, for {seconds:.0f} s (daemon exit {code})")
print(f"  due runs:     {len(started) + len(skipped)} (started {len(started)}, skipped {len(skipped)})")
print(f"  drift:        median {statistics.median(drifts):.1f} ms, p99 {pct(drifts, 0.99):.1f} ms,"
      f" max {drifts[-1]:.1f} ms")
print(f"  peak RSS:     daemon {peak['daemon'] / 2**20:.0f} MB, launcher {peak['launcher'] / 2**20:.0f} MB")
print(f"  history:      {rows}")
lost = len(started) - recorded
# Every due time accounted for: each playbook's runs are due every second from its first due
# time (its phase), so from the first to the stop there are floor(stop - first) + 1 of them.
dues: dict[str, list[float]] = {}
for e in started + skipped:
    dues.setdefault(e["playbook"], []).append(e["due"])
if schedule == "every 1 second":
    planned = sum(int(stopped_at - min(times)) + 1 for times in dues.values())
    accounted = sum(1 for times in dues.values() for due in times if due <= stopped_at)
    print(f"  planned runs: {planned} due before the stop; {accounted} started or skipped"
          f" ({planned - accounted} missing)")
print(f"  lost runs:    {lost} (started {len(started)}, finished rows {recorded},"
      f" skipped rows {rows.get('skipped', 0)} vs {len(skipped)} logged, running rows {rows.get('running', 0)})")
print(f"  machine CPU:  {busy / seconds:.2f} cores busy on average ({psutil.cpu_count()} cores)")
runs = max(1, len(started))
per_run = {name: f"{value / runs * 1000:.1f} ms" for name, value in own_cpu.items()}
print(f"  CPU per run:  {busy / runs * 1000:.1f} ms machine-wide (other work included); {per_run}")
PYEOF
