"""Reports written at the end of a run: ``--report run.json`` and ``--junit junit.xml``.

The JSON report is SPEC §8's: ``run`` (id, playbook, status, exit_code, started,
ended, duration, trigger) and ``steps`` (id, label, status, attempts, started, duration,
result, error). The JUnit report has one testcase per step; failed steps carry a
``<failure>``, skipped ones ``<skipped/>``, and ignored failures (continue_on_error)
are failures too, with ``(ignored)`` in their message, since they did fail.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from runner.events import Recorder, output_tail


def report_data(recorder: Recorder) -> dict[str, Any]:
    run, end = recorder.run, recorder.finished
    return {
        "run": {
            "id": run.get("run_id"),
            "playbook": run.get("playbook"),
            "path": run.get("path"),
            "status": end.get("status"),
            "exit_code": end.get("exit_code"),
            "started": run.get("time"),
            "ended": end.get("time"),
            "duration": end.get("duration"),
            "trigger": run.get("trigger", "manual"),
            "dry_run": run.get("dry_run", False),
        },
        "steps": [
            {
                "id": event["step"].get("id"),
                "label": event["step"].get("label"),
                "status": event.get("status"),
                "attempts": event.get("attempts"),
                "started": event.get("started"),
                "duration": event.get("duration"),
                "result": event.get("result"),
                "error": event.get("error"),
            }
            for event in recorder.steps
        ],
    }


def write_atomically(path: Path, text: str, keep_mode: bool = False) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, renamed into place.

    ``keep_mode`` gives the new file the old one's mode (a file rewritten in place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if keep_mode and path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_report(path: Path, recorder: Recorder) -> None:
    text = json.dumps(report_data(recorder), indent=2, ensure_ascii=False, default=str) + "\n"
    write_atomically(path, text)


_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (a command may print any byte)."""
    return _NOT_XML.sub("\ufffd", text)


def junit_xml(recorder: Recorder) -> str:
    data = report_data(recorder)
    run = data["run"]
    suite = ET.Element(
        "testsuite",
        name=str(run["playbook"]),
        tests=str(len(data["steps"])),
        failures=str(sum(1 for s in data["steps"] if s["status"] == "failed")),
        skipped=str(sum(1 for s in data["steps"] if s["status"] in ("skipped", "cancelled"))),
        errors="0",
        time=f"{run['duration'] or 0:.3f}",
        timestamp=str(run["started"]),
    )
    for step in data["steps"]:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=str(run["playbook"]),
            name=str(step["label"]),
            time=f"{step['duration'] or 0:.3f}",
        )
        result = step["result"] or {}
        if step["status"] == "failed":
            message = step["error"] or "failed"
            if result.get("ignored"):
                message += " (ignored)"
            failure = ET.SubElement(case, "failure", message=_xml_text(message), type="StepFailed")
            failure.text = _xml_text("\n".join(output_tail(result, 200)))
        elif step["status"] in ("skipped", "cancelled"):
            ET.SubElement(case, "skipped", message=str(result.get("skip_reason") or step["status"]))
        for stream in ("stdout", "stderr"):
            if isinstance(result.get(stream), str) and result[stream]:
                tag = "system-out" if stream == "stdout" else "system-err"
                ET.SubElement(case, tag).text = _xml_text(result[stream])
    suites = ET.Element("testsuites", name="runbook")
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_junit(path: Path, recorder: Recorder) -> None:
    write_atomically(path, junit_xml(recorder))
