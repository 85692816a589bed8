#!/usr/bin/env bash
# Engine overhead of `runbook play`, side by side with bash (and Ansible, when installed).
#
#   bash bench/engine.sh [REPEATS]
#
# Measures (median of REPEATS runs, default 5):
#   - an empty playbook (start-up, loading, the run around zero steps);
#   - 1,000 no-op steps (`wait: 0`): engine overhead per step;
#   - 200 sequential `shell: "true"` steps: net cost per step (minus the empty run),
#     against bash running `sh -c true` 200 times;
#   - a parallel group of 40 `wait: 0.5s` and one of 40 `shell: "sleep 0.5"`: the group's
#     duration (first start to last end, from the JSON events), against bash `&`/`wait`;
#   - peak RSS of the 200-step run.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS="${1:-5}"
source bench/_setup.sh  # sets PY and RUNBOOK
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PY" - "$WORK" "$RUNBOOK" "$REPEATS" <<'PYEOF'
import json, os, resource, statistics, subprocess, sys, time
from datetime import datetime

work, runbook, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])


def book(name, steps, head=""):
    path = os.path.join(work, f"{name}.yml")
    with open(path, "w") as f:
        f.write(f"name: {name}\n{head}steps:\n" + "".join(s + "\n" for s in steps) if steps
                else f"name: {name}\nsteps: []\n")
    return path


def wall(argv):
    start = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - start, out


def median_run(argv):
    wall(argv)  # warm-up
    runs = [wall(argv) for _ in range(repeats)]
    return statistics.median(t for t, _ in runs), runs[-1][1]


def group_span(json_out):
    events = [json.loads(line) for line in json_out.splitlines() if line.startswith("{")]
    starts = [e["time"] for e in events if e["event"] == "step_started"]
    ends = [e["time"] for e in events if e["event"] == "step_finished"]
    return (datetime.fromisoformat(max(ends)) - datetime.fromisoformat(min(starts))).total_seconds()


play = lambda path, *extra: [runbook, "play", path, "--output", "plain", *extra]  # noqa: E731
empty = book("empty", [])
noop = book("noop1000", ["  - wait: 0"] * 1000)
shell = book("shell200", ['  - shell: "true"'] * 200)
par_wait = book("par40wait", ["  - parallel:"] + ["      - wait: 0.5s"] * 40, "max_parallel: 64\n")
par_sleep = book("par40sleep", ["  - parallel:"] + ['      - shell: "sleep 0.5"'] * 40, "max_parallel: 64\n")

t_empty, _ = median_run(play(empty))
t_noop, _ = median_run(play(noop))


def run_duration(path):
    """The run's own duration (run_started to run_finished), from its JSON events: no start-up."""
    out = wall([runbook, "play", path, "--output", "json"])[1]
    return json.loads(out.strip().splitlines()[-1])["duration"]


d_noop = statistics.median(run_duration(noop) for _ in range(repeats))
d_shell = statistics.median(run_duration(shell) for _ in range(repeats))
t_shell, _ = median_run(play(shell))
t_bash_shell, _ = median_run(["bash", "-c", "for i in $(seq 200); do /bin/sh -c true; done"])
t_bash_true, _ = median_run(["bash", "-c", "for i in $(seq 200); do /bin/true; done"])
spans = {}
for name, path in (("40 x wait 0.5s", par_wait), ("40 x shell sleep 0.5", par_sleep)):
    spans[name] = statistics.median(
        group_span(wall([runbook, "play", path, "--output", "json"])[1]) for _ in range(repeats))
t_bash_par, _ = median_run(["bash", "-c", "for i in $(seq 40); do sleep 0.5 & done; wait"])

rss = subprocess.run(["/usr/bin/time", "-f", "%M", *play(shell)], capture_output=True, text=True)
peak_mb = int(rss.stderr.strip().splitlines()[-1]) / 1024 if rss.returncode == 0 else float("nan")

print(f"empty playbook run                      {t_empty * 1000:8.1f} ms")
print(f"1,000 no-op steps: whole process, per step {(t_noop - t_empty) / 1000 * 1000:6.3f} ms   "
      "(loading and checking 1,000 steps included)")
print(f"1,000 no-op steps: the run, per step      {d_noop / 1000 * 1000:6.3f} ms   (target < 0.3)")
per_step = (t_shell - t_empty) / 200 * 1000
bash_sh = t_bash_shell / 200 * 1000
print(f"200 x shell 'true': net per step        {per_step:8.3f} ms   (target < 0.8)")
print(f"200 x shell 'true': the run, per step   {d_shell / 200 * 1000:8.3f} ms")
print(f"bash: sh -c true, per command           {bash_sh:8.3f} ms   -> runbook/bash = {per_step / bash_sh:.2f}x")
print(f"bash: /bin/true, per command            {t_bash_true / 200 * 1000:8.3f} ms")
for name, span in spans.items():
    print(f"parallel group {name:22s}  {span:8.3f} s    (target < 0.6)")
print(f"bash: 40 x sleep 0.5 & ... wait         {t_bash_par:8.3f} s")
print(f"peak RSS, 200-step run                  {peak_mb:8.1f} MB   (target < 80)")
ansible = subprocess.run(["bash", "-c", "command -v ansible-playbook"], capture_output=True, text=True)
if ansible.returncode == 0:
    tasks = "".join("    - command: /bin/true\n" for _ in range(20))
    path = os.path.join(work, "ansible.yml")
    with open(path, "w") as f:
        f.write(f"- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n{tasks}")
    empty_play = os.path.join(work, "ansible0.yml")
    with open(empty_play, "w") as f:
        f.write("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks: []\n")
    env = {**os.environ, "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"}
    def ans(p):
        start = time.perf_counter()
        exe = ansible.stdout.strip()
        interpreter = os.path.join(os.path.dirname(exe), "python3")
        subprocess.run([exe, "-i", "localhost,", "-e", f"ansible_python_interpreter={interpreter}", p],
                       check=True, capture_output=True, env=env)
        return time.perf_counter() - start
    per_task = (statistics.median(ans(path) for _ in range(3)) - statistics.median(ans(empty_play) for _ in range(3))) / 20
    print(f"ansible: command task, net per task     {per_task * 1000:8.1f} ms   -> ansible/runbook = {per_task * 1000 / per_step:.0f}x")
else:
    print("ansible-playbook not installed: Ansible comparison left out (pip install ansible-core to add it)")
PYEOF
