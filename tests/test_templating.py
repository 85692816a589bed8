"""Templates (SPEC §3, §5b helpers, §8 "Variables"): render, evaluate, filters, tests, analyze; facts."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import re
import shlex
import string
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import runner.facts
from runner.errors import RunbookError, TemplateError
from runner.facts import Facts
from runner.templating import TemplateRefs, TemplateSyntax, analyze, evaluate, render

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, database=None)

NASTY_STRINGS = [
    "",
    " ",
    "plain",
    "two words",
    "it's",
    'say "hi"',
    "$HOME",
    "${PATH}",
    "`id`",
    "$(rm -rf /)",
    "a;b&&c||d|e",
    "back\\slash",
    "tab\there",
    "new\nline",
    "glob*?[ab]",
    "~root",
    "-n",
    "--option=value",
    "#comment",
    "'",
    "''",
    '"',
    "!event",
    "{{ not a template }}",
    "ünïcødé ✓",
    "a\x01b",
]


def r(source: object, **context: object) -> object:
    return render(source, context)


# --- render: native types, text, recursion -------------------------------------------------


@pytest.mark.parametrize(
    ("source", "context", "expected"),
    [
        ("{{ xs }}", {"xs": [1, "two", 3.0]}, [1, "two", 3.0]),
        ("{{ n }}", {"n": 3}, 3),
        ("{{ n + 1 }}", {"n": 3}, 4),
        ("{{ f }}", {"f": 2.5}, 2.5),
        ("{{ flag }}", {"flag": True}, True),
        ("{{ flag }}", {"flag": False}, False),
        ("{{ n > 2 }}", {"n": 3}, True),
        ("{{ d }}", {"d": {"a": [1, {"b": 2}]}}, {"a": [1, {"b": 2}]}),
        ("{{ d.a }}", {"d": {"a": [1, 2]}}, [1, 2]),
        ("{{ xs | length }}", {"xs": [1, 2, 3]}, 3),
        ("{{ none }}", {}, None),
        ("{{ [1, 2] + [3] }}", {}, [1, 2, 3]),
        ("{{ {'k': n} }}", {"n": 1}, {"k": 1}),
        ("{{ s }}", {"s": "007"}, "007"),
        ("{{n}}", {"n": 5}, 5),
        ("  {{ n }}  ", {"n": 5}, 5),
    ],
)
def test_a_single_expression_keeps_its_native_type(source: str, context: dict, expected: object) -> None:
    result = render(source, context)
    assert result == expected
    assert type(result) is type(expected)


def test_a_single_expression_returns_the_very_object() -> None:
    xs = [1, 2, 3]
    assert render("{{ xs }}", {"xs": xs}) is xs


@pytest.mark.parametrize(
    ("source", "context", "expected"),
    [
        ("n={{ n }}", {"n": 3}, "n=3"),
        ("{{ a }}{{ b }}", {"a": 1, "b": 2}, "12"),
        ("{{ a }} and {{ b }}", {"a": True, "b": [1]}, "True and [1]"),
        ("{% if flag %}yes{% else %}no{% endif %}", {"flag": True}, "yes"),
        ("{% for x in xs %}{{ x }},{% endfor %}", {"xs": [1, 2]}, "1,2,"),
        ("{{ '}}' }}", {}, "}}"),
        ("line\n{{ n }}\n", {"n": 1}, "line\n1\n"),
    ],
)
def test_mixed_text_renders_to_a_string(source: str, context: dict, expected: str) -> None:
    assert render(source, context) == expected


def test_nested_values_are_rendered_recursively() -> None:
    value = {
        "url": "https://{{ host }}/x",
        "ports": ["{{ port }}", 22, "{{ port + 1 }}"],
        "nested": {"deep": [{"flag": "{{ flag }}", "n": None}], "text": "plain"},
        "count": 5,
    }
    assert r(value, host="h.example", port=80, flag=False) == {
        "url": "https://h.example/x",
        "ports": [80, 22, 81],
        "nested": {"deep": [{"flag": False, "n": None}], "text": "plain"},
        "count": 5,
    }


def test_render_does_not_change_its_input() -> None:
    value = {"a": ["{{ n }}"]}
    render(value, {"n": 1})
    assert value == {"a": ["{{ n }}"]}


@pytest.mark.parametrize(
    "value",
    [
        0,
        1.5,
        True,
        None,
        "plain",
        "{ not: template }",
        "100% sure",
        "a } b { c",
        "",
        [],
        {},
        ["x", 1],
        {"k": "v"},
    ],
)
def test_non_templates_come_back_unchanged(value: object) -> None:
    assert render(value, {}) == value
    assert type(render(value, {})) is type(value)


def test_non_template_strings_do_not_need_their_names_defined() -> None:
    assert render("$HOME and ${x}", {}) == "$HOME and ${x}"


@pytest.mark.parametrize("source", ["{{- x }}", "{{ x -}}", "{{- x -}}"])
def test_whitespace_control_in_a_single_expression(source: str) -> None:
    assert render(source, {"x": 1}) in (1, "1")


# --- evaluate -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "context", "expected"),
    [
        ("n > 1", {"n": 2}, True),
        ("n > 1", {"n": 0}, False),
        ("{{ n > 1 }}", {"n": 2}, True),
        ("{{n > 1}}", {"n": 0}, False),
        (
            "steps.upload.ok and steps.logs.count > 0",
            {"steps": {"upload": {"ok": True}, "logs": {"count": 2}}},
            True,
        ),
        (
            "steps.upload.ok and steps.logs.count > 0",
            {"steps": {"upload": {"ok": True}, "logs": {"count": 0}}},
            False,
        ),
        ("x is defined", {}, False),
        ("x is not defined or x == 1", {}, True),
        ("result.status_code == 200", {"result": {"status_code": 200}}, True),
        ("attempt >= 3", {"attempt": 3}, True),
        ("'a' in xs", {"xs": ["a"]}, True),
        ("xs | length", {"xs": [1, 2]}, 2),
        ("name is match('web')", {"name": "web-1"}, True),
        (True, {}, True),
        (False, {}, False),
        (None, {}, None),
    ],
)
def test_evaluate(expression: object, context: dict, expected: object) -> None:
    result = evaluate(expression, context)
    assert result == expected
    assert type(result) is type(expected)


def test_evaluate_undefined_name_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="nope") as info:
        evaluate("nope > 1", {}, ("steps", 2, "when"))
    assert info.value.path == ("steps", 2, "when")


# --- strict undefined and errors ------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ missing_var }}",
        "x {{ missing_var }} y",
        "{{ missing_var.attr }}",
        "{{ missing_var | upper }}",
        "{{ missing_var + 1 }}",
        "{% if missing_var %}a{% endif %}",
    ],
)
def test_an_undefined_name_is_an_error_naming_it(source: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(source, {"other": 1})
    assert "missing_var" in str(info.value)
    assert info.value.path == ()


@pytest.mark.parametrize(
    "source",
    [
        "{{ [1, missing_var] }}",
        "{{ {'k': missing_var} }}",
        "{{ [[missing_var]] }}",
        "{{ (1, missing_var) }}",
        "x{{ [1, missing_var] }}",
    ],
)
def test_an_undefined_name_inside_a_container_is_an_error(source: str) -> None:
    with pytest.raises(TemplateError, match="missing_var"):
        render(source, {})


def test_template_errors_are_runbook_errors_failing_the_step() -> None:
    assert issubclass(TemplateError, RunbookError)
    assert TemplateError.exit_code == 1


def test_the_error_path_is_where_inside_the_value() -> None:
    value = {"a": ["ok", {"b": "{{ nope }}"}], "c": "{{ fine }}"}
    with pytest.raises(TemplateError, match="nope") as info:
        render(value, {"fine": 1})
    assert info.value.path == ("a", 1, "b")


def test_the_error_path_extends_the_given_path() -> None:
    with pytest.raises(TemplateError) as info:
        render({"cmd": ["x", "{{ nope }}"]}, {}, ("steps", 3, "shell"))
    assert info.value.path == ("steps", 3, "shell", "cmd", 1)


def test_a_missing_attribute_is_an_error_naming_it() -> None:
    with pytest.raises(TemplateError, match="no_such_key"):
        render("{{ steps.logs.no_such_key }}", {"steps": {"logs": {"paths": []}}})


@pytest.mark.parametrize(
    ("source", "context"),
    [
        ("{{ '{' | from_json }}", {}),
        ("{{ 'x' | hash('no-such-algorithm') }}", {}),
        ("{{ 'ten' | duration }}", {}),
        ("{{ [1] | strftime }}", {}),
        ("{{ 1 / 0 }}", {}),
        ("{{ range(10**9) | list }}", {}),
        ("{{ x", {}),
        ("{% if %}", {}),
    ],
)
def test_failures_inside_templates_are_template_errors(source: str, context: dict) -> None:
    with pytest.raises(TemplateError):
        render(source, context)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "text {{ ''.__class__.__mro__ }}",
        "{{ ().__class__.__base__.__subclasses__() }}",
        "{{ f.__globals__ }}",
        "{{ f.__code__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ '{0.__class__}'.format('') }}",
        "{{ d.__class__ }}",
    ],
)
def test_the_sandbox_blocks_python_internals(source: str) -> None:
    with pytest.raises(TemplateError):
        render(source, {"f": lambda: 1, "d": {}})


# --- filters of SPEC §3 ---------------------------------------------------------------------


@pytest.mark.parametrize("text", NASTY_STRINGS)
def test_quote_round_trips_through_a_shell_split(text: str) -> None:
    quoted = r("{{ s | quote }}", s=text)
    assert shlex.split(quoted) == [text]


@PROPERTY_SETTINGS
@given(st.text())
def test_property_quote_round_trips(text: str) -> None:
    assert shlex.split(r("{{ s | quote }}", s=text)) == [text]


def test_quote_maps_over_a_list_into_one_command_line() -> None:
    line = r("rm -f {{ paths | map('quote') | join(' ') }}", paths=NASTY_STRINGS)
    assert shlex.split(line) == ["rm", "-f", *NASTY_STRINGS]


def test_quote_stringifies_non_strings() -> None:
    assert r("{{ 5 | quote }}") == "5"


@pytest.mark.parametrize(
    "value", [{"a": [1, 2.5, None, True], "ü": "✓"}, [], "text", 3, None, {"nested": {"x": [{"y": "z"}]}}]
)
def test_to_json_and_from_json(value: object) -> None:
    text = r("{{ v | to_json }}", v=value)
    assert isinstance(text, str)
    assert json.loads(text) == value
    assert r("{{ t | from_json }}", t=json.dumps(value)) == value


def test_to_json_options_and_from_json_types() -> None:
    assert r("{{ v | to_json(sort_keys=true) }}", v={"b": 1, "a": 2}) == '{"a": 2, "b": 1}'
    assert json.loads(r("{{ v | to_json(indent=2) }}", v={"a": 1})) == {"a": 1}
    assert r("{{ '[1, 2]' | from_json }}") == [1, 2]
    assert r("{{ ('{\"n\": 3}' | from_json).n + 1 }}") == 4


@pytest.mark.parametrize("value", [{"a": [1, 2.5, None, True], "b": {"c": "d"}}, ["x", "y"], "text", 3])
def test_to_yaml_and_from_yaml(value: object) -> None:
    text = r("{{ v | to_yaml }}", v=value)
    assert isinstance(text, str)
    assert yaml.safe_load(text) == value
    assert r("{{ t | from_yaml }}", t=yaml.safe_dump(value)) == value


def test_from_yaml_is_safe() -> None:
    with pytest.raises(TemplateError):
        r("{{ t | from_yaml }}", t="!!python/object/apply:os.system ['true']")


def test_regex_search() -> None:
    assert r("{{ 'build 1234 ok' | regex_search('[0-9]+') }}") == "1234"
    assert r("{{ 'no digits' | regex_search('[0-9]+') }}") is None
    assert r("{{ 'ABC' | regex_search('b', ignorecase=true) }}") == "B"
    assert r("{{ 'a\nb' | regex_search('^b$', multiline=true) }}") == "b"


def test_regex_search_with_group_arguments() -> None:
    # As in Ansible: each \N or \g<name> argument picks a group; the result is their list.
    assert r("{{ 'none' | regex_search('(a)', '\\\\1') }}") is None
    assert r("{{ s | regex_search('(\\\\w+)=(\\\\w+)', '\\\\2', '\\\\1') }}", s="key=val") == ["val", "key"]
    assert r("{{ s | regex_search('(?P<k>\\\\w+)=', '\\\\g<k>') }}", s="key=val") == ["key"]


def test_regex_replace() -> None:
    assert r("{{ 'a-b-c' | regex_replace('-', '_') }}") == "a_b_c"
    assert r("{{ 'a-b-c' | regex_replace('-') }}") == "abc"
    assert r("{{ 'user@host' | regex_replace('(\\\\w+)@(\\\\w+)', '\\\\2 at \\\\1') }}") == "host at user"
    assert r("{{ 'AaA' | regex_replace('a', 'x', ignorecase=true) }}") == "xxx"


def test_regex_findall() -> None:
    assert r("{{ 'a1b22c333' | regex_findall('[0-9]+') }}") == ["1", "22", "333"]
    assert r("{{ 'none' | regex_findall('[0-9]+') }}") == []
    assert r("{{ 'k1=v1 k2=v2' | regex_findall('(\\\\w+)=(\\\\w+)') }}") == [("k1", "v1"), ("k2", "v2")]


@pytest.mark.parametrize("text", ["", "hello", "ünïcødé ✓", "a\nb\x00c", "=" * 7])
def test_b64encode_and_b64decode(text: str) -> None:
    encoded = r("{{ s | b64encode }}", s=text)
    assert encoded == base64.b64encode(text.encode("utf-8")).decode("ascii")
    assert r("{{ s | b64decode }}", s=encoded) == text
    assert r("{{ s | b64encode | b64decode }}", s=text) == text


def test_b64decode_of_bad_text_is_a_template_error() -> None:
    with pytest.raises(TemplateError):
        r("{{ 'not base64!' | b64decode }}")


@pytest.mark.parametrize(
    ("path", "base", "folder"),
    [("/a/b/c.txt", "c.txt", "/a/b"), ("rel/x", "x", "rel"), ("name", "name", ""), ("/a/b/", "", "/a/b")],
)
def test_basename_and_dirname(path: str, base: str, folder: str) -> None:
    assert r("{{ p | basename }}", p=path) == base
    assert r("{{ p | dirname }}", p=path) == folder


def test_expanduser(isolated_env: Path) -> None:
    assert r("{{ '~/backups' | expanduser }}") == str(isolated_env / "backups")
    assert r("{{ '/abs/~x' | expanduser }}") == "/abs/~x"


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "md5", "sha512"])
@pytest.mark.parametrize("text", ["", "hello", "ünïcødé"])
def test_hash_matches_hashlib(algorithm: str, text: str) -> None:
    expected = hashlib.new(algorithm, text.encode("utf-8")).hexdigest()
    assert r(f"{{{{ s | hash('{algorithm}') }}}}", s=text) == expected


def test_hash_defaults_to_sha256() -> None:
    assert r("{{ 'abc' | hash }}") == hashlib.sha256(b"abc").hexdigest()


def test_strftime_of_a_datetime() -> None:
    moment = datetime(2024, 3, 5, 6, 7, 8, tzinfo=timezone(timedelta(hours=2)))
    assert r("{{ t | strftime('%Y-%m-%d %H:%M:%S %z') }}", t=moment) == "2024-03-05 06:07:08 +0200"
    assert r("{{ t | strftime('%Y-%m-%d') }}", t=datetime(1999, 12, 31)) == "1999-12-31"


@pytest.mark.parametrize(
    ("iso", "expected"),
    [
        ("2024-03-05T06:07:08+02:00", "2024-03-05 06:07 +0200"),
        ("2024-03-05T06:07:08", "2024-03-05 06:07 "),
        ("2024-03-05", "2024-03-05 00:00 "),
        ("2024-03-05T06:07:08Z", "2024-03-05 06:07 +0000"),
    ],
)
def test_strftime_of_an_iso_string(iso: str, expected: str) -> None:
    assert r("{{ t | strftime('%Y-%m-%d %H:%M %z') }}", t=iso) == expected


@pytest.mark.parametrize("epoch", [0, 1_700_000_000, 1_700_000_000.5])
def test_strftime_of_an_epoch_is_that_instant_with_its_offset(epoch: float) -> None:
    text = r("{{ t | strftime('%Y-%m-%dT%H:%M:%S%z') }}", t=epoch)
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")
    assert moment.tzinfo is not None
    assert moment.timestamp() == int(epoch)


def test_strftime_default_format_is_iso_like() -> None:
    moment = datetime(2024, 3, 5, 6, 7, 8, tzinfo=timezone.utc)
    assert datetime.strptime(r("{{ t | strftime }}", t=moment), "%Y-%m-%dT%H:%M:%S%z") == moment


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("250ms", 0.25), ("5s", 5), ("10m", 600), ("2h", 7200), ("7d", 7 * 86400), ("1.5m", 90), (30, 30)],
)
def test_duration_filter_gives_seconds(value: object, seconds: float) -> None:
    result = r("{{ v | duration }}", v=value)
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (512, "512B"), (1536, "1.5KiB"), (5 * 1024**2, "5.0MiB"), (3 * 1024**3, "3.0GiB")],
)
def test_filesize_filter_is_human(size: int, text: str) -> None:
    assert r("{{ n | filesize }}", n=size) == text


def test_urlencode() -> None:
    assert r("{{ 'a b&c' | urlencode }}") == "a%20b%26c"


# --- tests of SPEC §3 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'web-01' is match('web')", True),
        ("'web-01' is match('01')", False),
        ("'web-01' is search('01')", True),
        ("'web-01' is search('^01')", False),
        ("'WEB' is match('web', ignorecase=true)", True),
        ("'WEB' is match('web')", False),
        ("'a\nb' is search('^b', multiline=true)", True),
        ("'a\nb' is search('^b')", False),
        ("'web-01' is not match('db')", True),
        ("5 is match('[0-9]')", True),
    ],
)
def test_match_and_search_tests(expression: str, expected: bool) -> None:
    assert evaluate(expression, {}) is expected


def test_match_selects_in_a_filter_chain() -> None:
    hosts = ["web-1", "db-1", "web-2"]
    assert r("{{ hosts | select('match', 'web') | list }}", hosts=hosts) == ["web-1", "web-2"]
    assert r("{{ hosts | reject('search', '2$') | list }}", hosts=hosts) == ["web-1", "db-1"]


# --- helpers of SPEC §5b ------------------------------------------------------------------------

URLSAFE = set(string.ascii_letters + string.digits + "-_")


@pytest.mark.parametrize("n", [1, 8, 16, 32, 33])
def test_random_token_is_n_random_bytes_as_url_safe_text(n: int) -> None:
    token = r(f"{{{{ random_token({n}) }}}}")
    assert isinstance(token, str)
    assert set(token) <= URLSAFE
    padded = token + "=" * (-len(token) % 4)
    assert len(base64.urlsafe_b64decode(padded)) == n


def test_random_token_is_random() -> None:
    assert len({r("{{ random_token(16) }}") for _ in range(20)}) == 20


@pytest.mark.parametrize("n", [1, 2, 8, 20, 64, 200])
def test_random_password_is_exactly_n_printable_ascii_without_spaces(n: int) -> None:
    password = r(f"{{{{ random_password({n}) }}}}")
    assert isinstance(password, str)
    assert len(password) == n
    assert all(33 <= ord(c) <= 126 for c in password), password


def test_random_password_is_random_and_mixed() -> None:
    passwords = {r("{{ random_password(32) }}") for _ in range(20)}
    assert len(passwords) == 20
    joined = "".join(passwords)
    assert any(c.isdigit() for c in joined)
    assert any(c.islower() for c in joined)
    assert any(c.isupper() for c in joined)


def test_now_is_timezone_aware_local_time() -> None:
    before = datetime.now(timezone.utc)
    moment = r("{{ now() }}")
    after = datetime.now(timezone.utc)
    assert isinstance(moment, datetime)
    assert moment.tzinfo is not None and moment.utcoffset() is not None
    assert moment.utcoffset() == datetime.now().astimezone().utcoffset()
    assert before <= moment <= after
    assert r("{{ now().strftime('%Y') | int > 2000 }}") is True


def test_from_ini() -> None:
    text = "[db]\nhost = db.internal\nport = 5432\n\n[web]\nurl=https://x/?a=1&b=%(x)s\n"
    assert r("{{ t | from_ini }}", t=text) == {
        "db": {"host": "db.internal", "port": "5432"},
        "web": {"url": "https://x/?a=1&b=%(x)s"},
    }
    assert r("{{ (t | from_ini).db.port | int }}", t=text) == 5432


def test_from_ini_of_bad_text_is_a_template_error() -> None:
    with pytest.raises(TemplateError):
        r("{{ t | from_ini }}", t="no section header\n")


# --- analyze ---------------------------------------------------------------------------------


def refs(source: str, expression: bool = False) -> tuple[set[str], set[str]]:
    found = analyze(source, expression)
    assert isinstance(found, TemplateRefs)
    return set(found.names), set(found.steps)


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("plain text", set()),
        ("{{ a }}", {"a"}),
        ("{{ a }} and {{ b.c.d }}", {"a", "b"}),
        ("{{a}}{{-b-}}", {"a", "b"}),
        ("{{ a | upper }} {{ b ~ c }}", {"a", "b", "c"}),
        ("{{ f(a, k=b) }}", {"f", "a", "b"}),
        ("{% if a %}{{ b }}{% else %}{{ c }}{% endif %}", {"a", "b", "c"}),
        ("{% for i in items %}{{ i }}{{ loop.index }}{% endfor %}", {"items"}),
        ("{{ true }} {{ none }} {{ 1 + 2 }} {{ 'x' }}", set()),
        ("{# {{ commented }} #}{{ a }}", {"a"}),
        ("{% raw %}{{ not_read }}{% endraw %}", set()),
    ],
)
def test_analyze_lists_the_names_a_template_reads(source: str, names: set[str]) -> None:
    assert refs(source)[0] == names


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ("x > 1", {"x"}),
        ("x > 1 and y", {"x", "y"}),
        ("{{ x > 1 }}", {"x"}),
        ("result.rc == 0", {"result"}),
        ("'a' in xs", {"xs"}),
        ("true", set()),
    ],
)
def test_analyze_expressions(expression: str, names: set[str]) -> None:
    assert refs(expression, expression=True)[0] == names


@pytest.mark.parametrize(
    ("source", "expression", "names"),
    [
        ("{{ x | default(1) }}", False, set()),
        ("{{ x | d('a') }}", False, set()),
        ("{{ x.y.z | default('') }}", False, set()),
        ("{{ x | default(y) }}", False, {"y"}),
        ("{{ a | default(1) }} {{ b }}", False, {"b"}),
        ("{% if x is defined %}{{ x }}{% endif %}", False, set()),
        ("{{ x if x is defined else 'n' }}", False, set()),
        ("{% if x is undefined %}none{% endif %}", False, set()),
        ("{% if x is not defined %}none{% endif %}", False, set()),
        ("x is defined and x > 1", True, set()),
        ("x is defined and y", True, {"y"}),
    ],
)
def test_analyze_leaves_out_guarded_names(source: str, expression: bool, names: set[str]) -> None:
    assert refs(source, expression)[0] == names


@pytest.mark.parametrize(
    ("source", "expression", "steps"),
    [
        ("{{ steps.logs.paths }}", False, {"logs"}),
        ("{{ steps['logs'].count }}", False, {"logs"}),
        ("{{ steps.a.ok }} {{ steps.b }}", False, {"a", "b"}),
        ("{{ steps.logs.paths | map('quote') | join(' ') }}", False, {"logs"}),
        ("steps.upload.ok and steps.logs.count > 0", True, {"upload", "logs"}),
        ("{{ steps.maybe.ok | default(false) }}", False, set()),
        ("steps.maybe is defined and steps.maybe.ok", True, set()),
        ("{{ steps }}", False, set()),
        ("{{ other.logs }}", False, set()),
        ("{{ a }}", False, set()),
    ],
)
def test_analyze_reports_step_references(source: str, expression: bool, steps: set[str]) -> None:
    assert refs(source, expression)[1] == steps


def test_names_set_in_the_template_are_not_reported() -> None:
    assert refs("{% set x = 1 %}{{ x }}") == (set(), set())
    assert refs("{% set x = y %}{{ x }}")[0] == {"y"}
    assert refs("{% set ns = namespace(n=0) %}{{ ns.n }}")[0] == set()
    assert refs("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1) }}")[0] == set()


@pytest.mark.parametrize(
    ("source", "expression", "lineno"),
    [
        ("{{ x", False, 1),
        ("{{ x + }}", False, 1),
        ("line one\nline two\n{{ x + }}", False, 3),
        ("a\n{% if x %}\nb\n{% endfor %}", False, 4),
        ("{% endif %}", False, 1),
        ("{{ x | }}", False, 1),
        ("x >", True, 1),
        ("(x", True, 1),
        ("x = 1", True, 1),
    ],
)
def test_syntax_errors_raise_template_syntax_with_a_line(source: str, expression: bool, lineno: int) -> None:
    with pytest.raises(TemplateSyntax) as info:
        analyze(source, expression)
    assert info.value.lineno == lineno
    assert info.value.message


@pytest.mark.parametrize(
    ("source", "expression"),
    [
        ("{{ x | no_such_filter }}", False),
        ("x | no_such_filter", True),
        ("x is no_such_test", True),
        ("{{ x }}\n{{ y | no_such_filter }}", False),
    ],
)
def test_an_unknown_filter_or_test_is_a_template_syntax_error(source: str, expression: bool) -> None:
    with pytest.raises(TemplateSyntax, match="no_such") as info:
        analyze(source, expression)
    assert info.value.lineno == source.count("\n") + 1


def test_an_unknown_filter_gets_a_did_you_mean() -> None:
    with pytest.raises(TemplateSyntax, match="quote"):
        analyze("{{ x | qoute }}")


@pytest.mark.parametrize("source", ["{{ not }}", "{{ a }} {{ not }}", "{{ not.x }}"])
def test_the_fast_path_rejects_keywords_too(source: str) -> None:
    with pytest.raises(TemplateSyntax):
        analyze(source)


def test_keywords_as_attributes_are_fine() -> None:
    assert refs("{{ x.not }}") == ({"x"}, set())


_KEYWORDS = ["not", "and", "or", "in", "is", "if", "else", "for", "true", "false", "none", "True", "None"]
_IDENTIFIERS = st.one_of(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), st.sampled_from(_KEYWORDS))
_PRINTS = st.builds(
    lambda name, attrs, left, right: "{{" + left + name + "".join("." + a for a in attrs) + right + "}}",
    st.one_of(st.just("steps"), _IDENTIFIERS),
    st.lists(_IDENTIFIERS, max_size=3),
    st.sampled_from(["", " ", "- ", "-"]),
    st.sampled_from(["", " ", " -", "-"]),
)
_TEXT = st.text(alphabet=st.characters(blacklist_characters="{}#%", blacklist_categories=["Cs"]), max_size=8)


@PROPERTY_SETTINGS
@given(st.lists(st.one_of(_PRINTS, _TEXT), max_size=6))
def test_property_the_fast_path_agrees_with_a_full_parse(parts: list[str]) -> None:
    source = "".join(parts)

    def outcome(text: str) -> object:
        try:
            found = analyze(text)
        except TemplateSyntax as exc:
            return ("syntax error", exc.lineno)
        return (dict(found.names) if isinstance(found.names, dict) else set(found.names), set(found.steps))

    # A comment makes analyze parse the template instead of scanning it.
    assert outcome(source) == outcome(source + "{# c #}")


# --- facts -------------------------------------------------------------------------------------

FACT_KEYS = {"os", "arch", "hostname", "python", "cpu_count", "memory_total", "user", "cwd", "os_release"}


def test_facts_have_the_documented_keys() -> None:
    facts = Facts()
    assert set(facts) >= FACT_KEYS
    assert facts["os"] == platform.system().lower()
    assert facts["arch"] == platform.machine()
    assert isinstance(facts["hostname"], str) and facts["hostname"]
    assert facts["python"] == platform.python_version()
    assert isinstance(facts["cpu_count"], int) and facts["cpu_count"] >= 1
    assert isinstance(facts["memory_total"], int) and facts["memory_total"] > 0
    assert isinstance(facts["user"], str) and facts["user"]
    assert isinstance(facts["cwd"], str) and os.path.isabs(facts["cwd"])
    assert isinstance(facts["os_release"], dict)
    if platform.system() == "Linux" and os.path.exists("/etc/os-release"):
        assert "id" in facts["os_release"]


def test_facts_are_gathered_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = runner.facts.gather_facts

    def counting() -> dict:
        calls.append(1)
        return real()

    monkeypatch.setattr(Facts, "_cache", None)
    monkeypatch.setattr(runner.facts, "gather_facts", counting)
    facts = Facts()
    assert calls == []  # nothing is gathered before the first read
    assert facts["os"]
    cache = Facts._cache
    assert cache is not None
    assert facts["arch"] and facts["python"]
    assert len(facts) == len(list(facts)) == len(dict(Facts()))
    assert Facts()["hostname"] == facts["hostname"]
    assert render("{{ facts.cpu_count }} {{ facts['user'] }}", {"facts": Facts()})
    assert calls == [1]
    assert Facts._cache is cache


def test_facts_in_templates() -> None:
    context = {"facts": Facts()}
    assert render("{{ facts.cpu_count }}", context) == os.cpu_count()
    assert render("{{ facts.os }}", context) == platform.system().lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", render("{{ facts.python }}", context))


# --- §5b helpers as playbooks use them: known to validate, rendered by a run ---------------------


def test_urlencode_of_a_mapping_builds_a_query_string() -> None:
    from urllib.parse import parse_qsl

    query = r("{{ params | urlencode }}", params={"q": "a b&c", "page": 2, "to": "x/y"})
    assert isinstance(query, str)
    assert " " not in query and query.count("&") == 2
    assert parse_qsl(query) == [("q", "a b&c"), ("page", "2"), ("to", "x/y")]


def test_from_ini_reads_defaults_into_every_section() -> None:
    text = "[DEFAULT]\nretries = 3\n\n[db]\nhost = h\n"
    sections = r("{{ t | from_ini }}", t=text)
    assert sections["db"] == {"host": "h", "retries": "3"}
    assert sections["DEFAULT"] == {"retries": "3"}


def test_render_text_gives_text_even_for_one_expression() -> None:
    from runner.templating import render_text

    assert render_text("{{ n }}", {"n": 3}) == "3"
    assert render_text("{{ items }}\n", {"items": [1, 2]}) == "[1, 2]\n"
    assert render_text("{% for i in items %}{{ i }},{% endfor %}", {"items": [1, 2]}) == "1,2,"


@pytest.mark.parametrize(
    ("source", "line", "reason"),
    [
        ("first\nsecond {{ missing }}\n", 2, "undefined variable 'missing'"),
        ("a\nb\nc {% if %}\n", 3, "template syntax error"),
        ("{{ x }}\n\n\n{{ x | from_json }}", 4, "JSONDecodeError"),
        ("\n{{ ''.__class__.__mro__ }}", 2, "blocked by the template sandbox"),
    ],
)
def test_render_text_errors_name_the_template_and_line(source: str, line: int, reason: str) -> None:
    from runner.templating import render_text

    with pytest.raises(TemplateError) as caught:
        render_text(source, {"x": "{"}, "conf/app.j2")
    message = str(caught.value)
    assert message.startswith(f"conf/app.j2:{line}: "), message
    assert reason in message
    assert "\n" not in message


def _validate(tmp_path: Path, text: str) -> tuple[int, str]:
    import subprocess
    import sys

    book = tmp_path / "helpers.yml"
    book.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "validate", str(book)], capture_output=True, text=True, timeout=60
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_validate_knows_the_helpers(tmp_path: Path) -> None:
    code, output = _validate(
        tmp_path,
        """\
name: helpers
vars:
  token: "{{ random_token(16) }}"
  password: "{{ random_password(24) }}"
  query: "{{ {'q': 'a b'} | urlencode }}"
steps:
  - shell: "echo {{ now().isoformat() | quote }} {{ token }} {{ password | quote }} {{ query }}"
  - shell: "echo {{ ('[a]\\nb = 1' | from_ini).a.b }}"
""",
    )
    assert code == 0, output


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 'x' | urlencod }}", "did you mean 'urlencode'"),
        ("{{ 'x' | from_inii }}", "did you mean 'from_ini'"),
        ("{{ random_tokn(8) }}", "random_tokn"),
    ],
)
def test_validate_flags_misspelt_helpers(tmp_path: Path, template: str, expected: str) -> None:
    code, output = _validate(tmp_path, f'name: typo\nsteps:\n  - shell: "echo {template}"\n')
    assert code == 2, output
    assert expected in output


def test_a_run_renders_the_helpers(tmp_path: Path) -> None:
    from .playing import play

    run = play(
        tmp_path,
        """\
name: helpers-run
steps:
  - id: values
    shell:
      argv: [echo, "{{ random_token(9) }}", "{{ random_password(30) }}", "{{ now().year }}",
             "{{ {'a': 'x y'} | urlencode }}", "{{ ('[s]\\nk = v' | from_ini).s.k }}"]
""",
    )
    assert run.returncode == 0, run.stderr
    token, password, year, query, value = run.step("values")["result"]["stdout"].split()
    assert len(base64.urlsafe_b64decode(token)) == 9
    assert len(password) == 30
    assert int(year) >= datetime.now().year - 1
    assert (query, value) == ("a=x+y", "v")
