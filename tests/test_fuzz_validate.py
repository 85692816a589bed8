"""Fuzzing `runbook validate`: whatever the input, it answers 0 (valid) or 2 (invalid).

Never 70 (runbook's internal-error code) and never a traceback (SPEC §6 exit codes):
random YAML documents, random text full of YAML and Jinja punctuation, and random
edits of the example playbooks. The CLI runs in-process for speed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from runner.cli import main

REPO = Path(__file__).resolve().parent.parent
PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yml"))
PLAYBOOK_TEXTS = [path.read_text() for path in PLAYBOOKS]


FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

EXIT_OK, EXIT_INVALID = 0, 2  # never 70, runbook's internal-error code


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder like playbooks/: the vars files the examples name are there."""
    shutil.copytree(REPO / "playbooks" / "vars", tmp_path / "vars")
    return tmp_path


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``runbook validate PATH`` in-process: its exit code and everything it printed."""
    capsys.readouterr()
    try:
        main(["validate", str(path)])
        code: object = 0
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err  # type: ignore[return-value]


def check(
    text: str, workdir: Path, capsys: pytest.CaptureFixture[str], excuse: bool = True
) -> tuple[int, str]:
    """Validate ``text``; fail unless it exits 0 or 2 with no traceback."""
    path = workdir / "fuzz.yml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    code, output = validate(path, capsys)
    if excuse:
        assume(known_crash(text, output) is None)
    assert code in (EXIT_OK, EXIT_INVALID), f"exit {code} for:\n{text}\n--- output:\n{output}"
    assert "Traceback" not in output, f"traceback for:\n{text}\n--- output:\n{output}"
    assert "internal error" not in output, f"internal error for:\n{text}\n--- output:\n{output}"
    if code == EXIT_INVALID:
        assert output.strip(), f"exit 2 without a word for:\n{text}"
    return code, output


def test_the_example_playbooks_are_valid(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert PLAYBOOKS, "no example playbooks found"
    for text in PLAYBOOK_TEXTS:
        assert check(text, workdir, capsys, excuse=False)[0] == EXIT_OK


# --- (a) random YAML documents and random text -----------------------------------------------

PLAYBOOK_KEYS = [
    "name",
    "description",
    "vars",
    "vars_files",
    "env",
    "defaults",
    "max_parallel",
    "timeout",
    "schedule",
    "steps",
    "on_failure",
    "finally",
    "id",
    "when",
    "loop",
    "loop_parallel",
    "needs",
    "retry",
    "until",
    "continue_on_error",
    "failed_when",
    "changed_when",
    "tags",
    "parallel",
    "max_workers",
    "fail_fast",
    "attempts",
    "delay",
    "backoff",
    "max_delay",
    "jitter",
    "on",
    "shell",
    "copy",
    "glob",
    "http",
    "check_port",
    "s3_upload",
    "hash",
    "wait",
    "cmd",
    "argv",
    "src",
    "dest",
    "pattern",
    "path",
    "url",
    "host",
    "port",
    "bucket",
    "algorithm",
    "older_than",
    "min_size",
    "content",
    "mode",
    "creates",
]
TEMPLATE_SNIPPETS = [
    "{{ x }}",
    "{{ steps.a.ok }}",
    "{{ item }}",
    "{{",
    "}}",
    "{%",
    "%}",
    "{# #}",
    "{{ undefined_name }}",
    "{{ x | default(1) }}",
    "{{ ''.__class__ }}",
    "{% for i in x %}",
    "{{ 1 +",
    "steps.a.ok and x",
    "{{ steps.nope.ok }}",
    "{{ loop.index }}",
    "{{ not }}",
    "{{ range(10**9) | list }}",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-5, max_value=10),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        [
            "5s",
            "250ms",
            "1.5m",
            "-5s",
            "5x",
            "10KB",
            "5MiB",
            "2G",
            "7d",
            "every day at 02:30",
            "30 2 * * *",
            "0644",
            "a",
            "build",
            "*.log",
            "/tmp",
            "http://x",
            *TEMPLATE_SNIPPETS,
        ]
    ),
)
KEYS = st.one_of(st.sampled_from(PLAYBOOK_KEYS), st.text(max_size=8))


def containers(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5))


YAML_DATA = st.recursive(SCALARS, containers, max_leaves=25)


@st.composite
def playbook_like(draw: st.DrawFn) -> dict:
    """Mostly-shaped playbooks, so that fuzzing reaches past the top-level checks."""
    doc: dict = {}
    if draw(st.integers(min_value=0, max_value=9)):
        doc["name"] = draw(st.one_of(st.text(min_size=1, max_size=8), SCALARS))
    step = st.dictionaries(KEYS, YAML_DATA, min_size=1, max_size=4)
    handler_step = st.builds(
        lambda handler, args, extra: {handler: args, **extra},
        st.sampled_from(
            ["shell", "copy", "glob", "http", "check_port", "s3_upload", "hash", "wait", "parallel", "nope"]
        ),
        YAML_DATA,
        st.dictionaries(st.sampled_from(PLAYBOOK_KEYS[10:30]), YAML_DATA, max_size=3),
    )
    doc["steps"] = draw(st.one_of(st.lists(st.one_of(handler_step, step), max_size=5), YAML_DATA))
    extra = draw(st.dictionaries(st.sampled_from(PLAYBOOK_KEYS[:12]), YAML_DATA, max_size=4))
    doc.update(extra)
    return doc


def dump(data: object, flow: bool | None) -> str:
    return yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True, sort_keys=False)


@FUZZ
@given(data=YAML_DATA, flow=st.sampled_from([None, False, True]))
def test_random_yaml_documents(
    data: object, flow: bool | None, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check(dump(data, flow), workdir, capsys)


@settings(FUZZ, max_examples=150)
@given(doc=playbook_like(), flow=st.sampled_from([None, False]))
def test_random_playbook_shaped_documents(
    doc: dict, flow: bool | None, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check(dump(doc, flow), workdir, capsys)


RAW_TOKENS = [
    ":",
    ": ",
    "- ",
    "-",
    "[",
    "]",
    "{",
    "}",
    ",",
    "#",
    "&a",
    "*a",
    "!",
    "!!",
    "!!str",
    "!!python/object:os.system",
    "!!binary",
    "!vault",
    "!vault |",
    "!!map",
    "!!set",
    "!!omap",
    "|",
    ">",
    "|-",
    ">+",
    "'",
    '"',
    "%YAML 1.2",
    "%TAG",
    "---",
    "...",
    "<<: *a",
    "? ",
    "@",
    "`",
    "\t",
    "\n",
    "\n  ",
    "\n    ",
    "  ",
    "\r\n",
    "\\",
    "\x00",
    "\ufeff",
    "\x85",
    "\u2028",
    "name: x",
    "steps:",
    "steps: []",
    "  - shell: echo",
    "  - id: a",
    "    needs: [a]",
    "vars:",
    "  x: 1",
    "{{",
    "}}",
    "{%",
    "%}",
    "{{ x }}",
    "0x1F",
    "1e3",
    ".inf",
    ".nan",
    "~",
    "yes",
    "null",
    "2024-01-02",
    "é",
    "😀",
]
RAW_TEXT = st.lists(st.one_of(st.sampled_from(RAW_TOKENS), st.text(max_size=4)), max_size=30).map("".join)


@FUZZ
@given(text=RAW_TEXT)
def test_random_text(text: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check(text, workdir, capsys)


@FUZZ
@given(text=RAW_TEXT)
def test_random_text_after_a_valid_header(
    text: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check("name: fuzz\nsteps:\n  - id: a\n    shell: echo hi\n" + text, workdir, capsys)


@settings(FUZZ, max_examples=60)
@given(data=st.binary(max_size=200))
def test_random_bytes(data: bytes, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = workdir / "fuzz.yml"
    path.write_bytes(data)
    code, output = validate(path, capsys)
    assume(known_crash(data.decode("utf-8", "replace"), output) is None)
    assert code in (EXIT_OK, EXIT_INVALID), f"exit {code} for {data!r}\n{output}"
    assert "Traceback" not in output


# --- (b) random edits of the example playbooks -----------------------------------------------

_VALUE = re.compile(r"^(?P<head>\s*(?:-\s+)?[A-Za-z_][\w-]*:\s+)(?P<value>\S.*)$")
RANDOM_SCALARS = st.one_of(
    st.sampled_from(
        [
            "0",
            "-1",
            "1.5",
            "-0.5",
            "99999999999999999999",
            ".inf",
            "-.inf",
            ".nan",
            "~",
            "null",
            "true",
            "false",
            "yes",
            "no",
            "''",
            '""',
            "[]",
            "{}",
            "[a, b]",
            "{a: 1}",
            "0x1F",
            "0o17",
            "1e3",
            "5x",
            "-5s",
            "5s",
            "1.5m",
            "10KB",
            "2024-01-01",
            "12:30:00",
            "'{{'",
            '"{{ x }}"',
            '"{{ steps.nope.ok }}"',
            '"{{ 1 + }}"',
            "!!binary aGk=",
            "!!str 5",
            "!!int x",
            "!vault |",
            "!vault x",
            "&anchor v",
            "*alias",
            "|",
            ">",
            "'unterminated",
            '"unterminated',
            "[unclosed",
            "{unclosed",
            "a: b: c",
            "- x",
            "#",
            "@x",
            "`x`",
            "%x",
            "? x",
        ]
    ),
    st.integers().map(str),
    st.floats().map(repr),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=10),
)
OPERATIONS = ["delete", "duplicate", "swap", "indent", "insert", "value", "value"]
INSERTED = st.one_of(st.sampled_from(RAW_TOKENS), st.text(max_size=4))


@st.composite
def mutated_playbook(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(PLAYBOOK_TEXTS)).split("\n")
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not lines:
            lines = [""]
        index = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        operation = draw(st.sampled_from(OPERATIONS))
        line = lines[index]
        if operation == "delete":
            del lines[index]
        elif operation == "duplicate":
            lines.insert(index, line)
        elif operation == "swap":
            other = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif operation == "indent":
            indent = draw(
                st.one_of(
                    st.integers(min_value=0, max_value=12).map(" ".__mul__),
                    st.sampled_from(["\t", " \t", "\t  "]),
                )
            )
            lines[index] = indent + line.lstrip(" ")
        elif operation == "insert":
            column = draw(st.integers(min_value=0, max_value=len(line)))
            lines[index] = line[:column] + draw(INSERTED) + line[column:]
        else:
            candidates = [i for i, text in enumerate(lines) if _VALUE.match(text)]
            if candidates:
                index = draw(st.sampled_from(candidates))
                match = _VALUE.match(lines[index])
                assert match is not None
                lines[index] = match.group("head") + draw(RANDOM_SCALARS)
    return "\n".join(lines)


@settings(FUZZ, max_examples=600)
@given(text=mutated_playbook())
def test_mutated_example_playbooks(text: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check(text, workdir, capsys)


# --- crashes found by fuzzing -----------------------------------------------------------------
#
# A crash the fuzzer finds and that cannot be fixed at once goes here, as (message regex,
# trigger regex in the input), with a strict-xfail test holding its minimal reproducer: the
# fuzz tests then set aside inputs that hit it and keep looking for new ones. Empty: every
# crash found so far is fixed and has a test of its own below.

KNOWN_CRASHES: dict[str, tuple[str, str]] = {}


def known_crash(text: str, output: str) -> str | None:
    for name, (message, trigger) in KNOWN_CRASHES.items():
        if re.search(rf"internal error: (?:{message})", output) and re.search(trigger, text):
            return name
    return None


@pytest.mark.parametrize("value", [".inf", ".nan"])
def test_a_non_finite_size_is_invalid_not_a_crash(
    value: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = f"name: sizes\nsteps:\n  - glob: {{pattern: '*.log', min_size: {value}}}\n"
    assert check(text, workdir, capsys, excuse=False)[0] == EXIT_INVALID


@pytest.mark.parametrize(
    "steps",
    [
        "  - id: a\n    shell: echo\n  - id: b\n    shell: echo\n    needs: [5]\n",
        "  - id: a\n    shell: echo\n  - id: b\n    shell: echo\n    needs: yes\n",
        "  - shell: echo\n    needs: [[a]]\n",
        "  - shell: echo\n    needs: {a: 1}\n",
        "  - id: 1.5\n    shell: echo\n  - id: b\n    shell: echo\n    needs: [nope]\n",
        "  - id: -1\n    shell: echo\n  - id: b\n    shell: echo\n    needs: [build]\n",
        "  - id: [a]\n    shell: echo\n",
        "  - id: {a: 1}\n    shell: echo\n",
    ],
    ids=[
        "needs-int",
        "needs-bool",
        "needs-list-item",
        "needs-mapping",
        "float-id",
        "int-id",
        "list-id",
        "mapping-id",
    ],
)
def test_non_string_needs_and_ids_are_invalid_not_a_crash(
    steps: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check("name: needs\nsteps:\n" + steps, workdir, capsys, excuse=False)[0] == EXIT_INVALID


@pytest.mark.parametrize("value", ["!!int x", "!!float x", "!!bool x"])
def test_a_core_tag_with_a_bad_value_is_invalid_not_a_crash(
    value: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = f"name: tags\nvars:\n  n: {value}\nsteps: []\n"
    assert check(text, workdir, capsys, excuse=False)[0] == EXIT_INVALID


@pytest.mark.parametrize(
    "step",
    [
        '  - shell: "{{ x | no_such_filter }}"\n',
        "  - shell: echo\n    when: x | no_such_filter\n",
        "  - shell: echo\n    when: x is no_such_test\n",
        "  - id: a\n    shell: echo\n    until: r|esult.rc == 0\n",
    ],
    ids=["filter-in-template", "filter-in-when", "test-in-when", "typo-in-until"],
)
def test_an_unknown_filter_or_test_is_invalid_not_a_crash(
    step: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = check("name: filters\nvars: {x: 1}\nsteps:\n" + step, workdir, capsys, excuse=False)
    assert code == EXIT_INVALID
    assert re.search(r"no_such_filter|no_such_test|esult", output)
