#!/usr/bin/env bash
# The network handlers (http, check_port) against the plain tools, in one run.
#
#   bash bench/net.sh [REPEATS]
#
# Starts nginx on a free 127.0.0.1 port with a tiny configuration in a mktemp folder
# (installed with apt-get when missing; stopped and removed on exit), serving a 612-byte
# page. Prints medians of REPEATS runs (default 3, after one warm-up run each; the
# contenders' runs are interleaved, so a busy moment hurts all alike):
#   - 500 GETs: one curl process each; `xargs -P 20 curl`; one requests Session in a
#     loop (python, the loop's own time and the whole process); runbook `http` as a
#     `loop` of 500 items with `loop_parallel: 20` (the step's own duration from its
#     step_finished JSON event, and the whole `runbook play` process).
#     Targets: the whole runbook play >= 2x faster than xargs -P 20 curl; the step's
#     duration within 1.5x of the requests Session loop. For scale, the same loop of
#     `wait: 0` (a templated no-op) gives the engine's own share of the step.
#   - 500 TCP probes of the nginx port: runbook `check_port` with `ports:` (the step's
#     duration; target < 0.15 s), beside 500 blocking connects from one Python loop.
# Every runbook result is checked (500 items, each status 200; 500 probes, all open);
# a failed step or a wrong result exits 1, a missed target is only listed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS="${1:-3}"
source bench/_setup.sh  # sets PY and RUNBOOK

NGINX="$(command -v nginx || true)"
[ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx
if [ -z "$NGINX" ]; then
    echo "bench/net.sh: nginx is missing; installing it with apt-get" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    if ! { $SUDO apt-get install -y -qq nginx-light >/dev/null 2>&1 \
           || $SUDO apt-get install -y -qq nginx >/dev/null 2>&1; }; then
        echo "bench/net.sh: could not install nginx (apt-get install nginx-light). Nothing was run." >&2
        exit 0
    fi
    NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
fi
for tool in curl xargs; do
    if ! command -v "$tool" >/dev/null; then
        echo "bench/net.sh: $tool is missing. Nothing was run." >&2
        exit 0
    fi
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/runbook-bench-net.XXXXXX")"
NGINX_PID=""
stop() {
    if [ -n "$NGINX_PID" ]; then
        kill "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap stop EXIT

PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$WORK/www" "$WORK/logs"
chmod 755 "$WORK" "$WORK/www"  # nginx's workers run as an unprivileged user when started by root
"$PY" -c 'import sys; open(sys.argv[1], "w").write("<!DOCTYPE html>\n" + "x" * 595 + "\n")' "$WORK/www/index.html"
cat > "$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/body;
    proxy_temp_path $WORK/proxy;
    fastcgi_temp_path $WORK/fastcgi;
    uwsgi_temp_path $WORK/uwsgi;
    scgi_temp_path $WORK/scgi;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$PORT backlog=1024;
        root $WORK/www;
        location / { try_files \$uri /index.html; }
    }
}
EOF
"$NGINX" -p "$WORK" -c "$WORK/nginx.conf" &
NGINX_PID=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null && break
    sleep 0.05
done
if ! curl -fsS -o /dev/null "http://127.0.0.1:$PORT/"; then
    echo "bench/net.sh: nginx did not start; its log:" >&2
    tail -5 "$WORK/logs/error.log" >&2 || true
    exit 1
fi

"$PY" - "$WORK" "$RUNBOOK" "$REPEATS" "$PORT" "$PY" "$NGINX" <<'PYEOF'
import json, os, statistics, subprocess, sys, time

work, runbook, repeats, port, py, nginx = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
N = 500
BASE = f"http://127.0.0.1:{port}"
problems = []  # missed targets, repeated at the end
failures = []  # failed steps and wrong results: the script exits 1


class Failed(Exception):
    pass


def wall(argv, **kwargs):
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        text = (proc.stderr.strip() or proc.stdout.strip())[-600:]
        raise Failed(f"`{' '.join(argv)[:80]}` exited {proc.returncode}: {text}")
    return took, proc.stdout


def book(name, text):
    path = os.path.join(work, f"{name}.yml")
    with open(path, "w") as f:
        f.write(text)
    return path


def play(path):
    """{wall, step, result} of a one-step playbook; Failed unless the step ends ok."""
    took, stdout = wall([runbook, "play", path, "--output", "json"])
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    finished = [e for e in events if e["event"] == "step_finished"]
    if len(finished) != 1 or finished[0]["status"] != "ok":
        error = finished[0].get("error") if finished else "no step_finished event"
        raise Failed(f"runbook step failed: {error}")
    return {"wall": took, "step": finished[0]["duration"], "result": finished[0]["result"]}


def interleaved(contenders):
    """Median (and the runs' range, as KEY_range) of each figure, the contenders' runs interleaved."""
    samples = {name: [] for name in contenders}
    for rep in range(-1, repeats):
        for name, run in contenders.items():
            figures = run()
            if rep >= 0:
                samples[name].append(figures)
    medians = {}
    for name, runs in samples.items():
        keys = [k for k in runs[0] if k != "result"]
        medians[name] = {k: statistics.median(r[k] for r in runs) for k in keys}
        medians[name].update({f"{k}_range": (min(r[k] for r in runs), max(r[k] for r in runs)) for k in keys})
        medians[name]["result"] = runs[-1].get("result")
    return medians


WIDTH = 50


def line(label, m, key="wall", note=""):
    seconds = m[key]
    runs = ""
    if f"{key}_range" in m and repeats > 1:
        low, high = m[f"{key}_range"]
        runs = f"(runs {low:.3f}-{high:.3f})"
    print(f"  {label:{WIDTH}s} {seconds:7.3f} s  {runs:22s} {note}".rstrip())


def ratio(label, value, target, higher_is_better):
    if target is None:
        print(f"  {label:{WIDTH}s} {value:7.2f}x")
        return
    meets = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    print(f"  {label:{WIDTH}s} {value:7.2f}x   target {sign} {target}x: {'meets' if meets else 'MISSES'}")
    if not meets:
        problems.append(f"{label}: {value:.2f}x, target {sign} {target}x")


def section(title, body):
    print(title)
    print("-" * len(title))
    try:
        body()
    except Failed as exc:
        print(f"  FAILED: {exc}")
        failures.append(f"{title}: {exc}")
    print()


SESSION_LOOP = f"""
import time
start = time.perf_counter()
import requests
session = requests.Session()
loop = time.perf_counter()
for i in range({N}):
    response = session.get("{BASE}/" + str(i))
    response.content
    assert response.status_code == 200, response.status_code
end = time.perf_counter()
print(end - loop, end - start)
"""


def session_loop():
    took, out = wall([py, "-c", SESSION_LOOP])
    loop, _in_process = map(float, out.split())
    return {"wall": took, "loop": loop}


def gets():
    urls = "\n".join(f"{BASE}/{i}" for i in range(N)) + "\n"
    loop_book = book("gets", f"""\
name: gets
steps:
  - id: get
    http: {{url: "{BASE}/{{{{ item }}}}", expect_status: 200}}
    loop: "{{{{ range({N}) | list }}}}"
    loop_parallel: 20
""")

    noop_book = book("noop", f"""\
name: noop
steps:
  - id: get
    wait: "{{{{ 0 if item is number else 1 }}}}"
    loop: "{{{{ range({N}) | list }}}}"
    loop_parallel: 20
""")

    def rb():
        figures = play(loop_book)
        results = figures["result"]["results"]
        codes = {r.get("status_code") for r in results}
        if len(results) != N or codes != {200}:
            raise Failed(f"runbook gave {len(results)} results with statuses {sorted(map(str, codes))}")
        return figures

    m = interleaved({
        "curl": lambda: {"wall": wall(["bash", "-c", f'for i in $(seq {N}); do curl -sf -o /dev/null "{BASE}/$i"; done'])[0]},
        "xargs": lambda: {"wall": wall(["xargs", "-P", "20", "-n", "1", "curl", "-sf", "-o", "/dev/null"],
                                       input=urls)[0]},
        "session": session_loop,
        "runbook": rb,
        "noop": lambda: play(noop_book),
    })
    line("curl, one process per GET", m["curl"])
    line("xargs -P 20 curl (one process per GET)", m["xargs"])
    line("requests Session loop: the loop", m["session"], "loop")
    line("requests Session loop: whole process", m["session"])
    rb_m = m["runbook"]
    line("runbook http loop_parallel 20: step", rb_m, "step")
    line("runbook http loop_parallel 20: whole process", rb_m, "wall",
         f"outside the step {rb_m['wall'] - rb_m['step']:.3f} s")
    line("the same loop of `wait: 0`: step (engine alone)", m["noop"], "step")
    ratio("xargs curl / runbook (whole), speed-up", m["xargs"]["wall"] / rb_m["wall"], 2, True)
    ratio("runbook step / Session loop, time", rb_m["step"] / m["session"]["loop"], 1.5, False)
    ratio("curl per GET / runbook (whole), speed-up", m["curl"]["wall"] / rb_m["wall"], None, True)


PROBE_LOOP = f"""
import socket, time
start = time.perf_counter()
for _ in range({N}):
    s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
    s.close()
print(time.perf_counter() - start)
"""


def probes():
    probe_book = book("probes", f"name: probes\nsteps:\n  - id: probe\n    check_port: {{ports: {[port] * N}}}\n")

    def rb():
        figures = play(probe_book)
        entries = figures["result"].get("ports") or []
        if len(entries) != N or not all(e["open"] for e in entries) or figures["result"]["open"] is not True:
            raise Failed(f"check_port gave {len(entries)} entries, {sum(e['open'] for e in entries)} open")
        return figures

    def plain():
        took, out = wall([py, "-c", PROBE_LOOP])
        return {"wall": took, "loop": float(out)}

    m = interleaved({"runbook": rb, "python": plain})
    line("runbook check_port, 500 ports: step", m["runbook"], "step", "(target < 0.15 s)")
    line("runbook check_port, 500 ports: whole process", m["runbook"])
    line("python, 500 blocking connects in a loop", m["python"], "loop")
    if m["runbook"]["step"] >= 0.15:
        problems.append(f"check_port 500 probes: step {m['runbook']['step']:.3f} s, target < 0.15 s")
    ratio("runbook step / python loop, time", m["runbook"]["step"] / m["python"]["loop"], None, False)


version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
print(f"{version} on 127.0.0.1:{port}; {os.cpu_count()} CPUs; medians of {repeats} runs after one warm-up\n")
section(f"1. {N} GETs of a 612-byte page", gets)
section(f"2. {N} TCP probes of an open port", probes)

for title, items in (("Missed targets:", problems), ("FAILED (exit status 1):", failures)):
    if items:
        print(title)
        for item in items:
            print(f"  - {item}")
if not problems and not failures:
    print("Every runbook step succeeded and met its target.")
sys.exit(1 if failures else 0)
PYEOF
