"""The ``runbook`` command line: commands, options, and exit codes.

Start-up is kept cheap: this module imports click only; each command imports what it
needs when it runs (``--version`` loads neither YAML nor Jinja nor jsonschema).
Errors from the engine arrive as ``RunbookError`` and print as one line on stderr
with their exit code; a traceback only with ``--debug`` (or ``RUNBOOK_DEBUG=1``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from runner import __version__
from runner.errors import EXIT_INVALID, RunbookError, UsageError

EXIT_INTERNAL = 70  # a bug in runbook itself (EX_SOFTWARE)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _color() -> bool | None:
    return False if os.environ.get("NO_COLOR") else None


def echo(message: str = "", err: bool = False) -> None:
    click.echo(message, err=err, color=_color())


def style(text: str, **styles: Any) -> str:
    if os.environ.get("NO_COLOR"):
        return text
    return click.style(text, **styles)


debug_option = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    help="Show a Python traceback when runbook fails.",
)


def _use_vault_key_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        from runner.vault import KEYS

        KEYS.key_file = value


vault_key_option = click.option(
    "--vault-key-file",
    metavar="FILE",
    expose_value=False,
    is_eager=True,
    callback=_use_vault_key_file,
    help="The vault key (or passphrase) for !vault values and encrypted files.",
)
var_options = [
    click.option(
        "-e",
        "--var",
        "cli_vars",
        multiple=True,
        metavar="KEY=VALUE",
        help="Set a variable (value read as YAML: -e n=3 is a number); @FILE loads a file.",
    ),
    click.option(
        "--vars-file",
        "vars_files",
        multiple=True,
        metavar="FILE",
        type=click.Path(dir_okay=False),
        help="Load variables from a YAML file.",
    ),
]


def with_var_options(func: Any) -> Any:
    for option in reversed([*var_options, vault_key_option]):
        func = option(func)
    return func


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="runbook", message="%(prog)s %(version)s")
@debug_option
def cli() -> None:
    """runbook: a declarative YAML task runner for operations work.

    \b
    Examples:
      runbook play playbooks/hello.yml
      runbook validate playbooks/*.yml
      runbook tasks              # list handlers
      runbook tasks shell        # arguments, results and an example
      runbook schema > playbook.schema.json
    """


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@with_var_options
@debug_option
def validate(files: tuple[str, ...], cli_vars: tuple[str, ...], vars_files: tuple[str, ...]) -> None:
    """Check playbooks without running them: structure, arguments, ids, needs, templates.

    Every problem is printed, one per line, as FILE:LINE:COL: WHERE: WHAT.
    Exits 0 when every file is valid, 2 otherwise.

    \b
    Examples:
      runbook validate site.yml
      runbook validate playbooks/*.yml -e env=prod --vars-file vars/prod.yml
    """
    from runner.errors import PlaybookError
    from runner.masking import SECRETS
    from runner.playbook import Group, load_playbook

    failed = False
    for file in files:
        try:
            playbook = load_playbook(file, cli_vars, vars_files)
        except PlaybookError as exc:
            failed = True
            for diagnostic in exc.diagnostics:
                echo(SECRETS.text(diagnostic.format()))
            count = len(exc.diagnostics)
            echo(style(f"{file}: {count} problem{'s' if count != 1 else ''}", fg="red"), err=True)
            continue
        except UsageError as exc:
            failed = True
            echo(f"runbook: error: {exc}", err=True)
            continue
        steps = sum(1 for node in playbook.walk() if not isinstance(node, Group))
        echo(f"{file}: {style('ok', fg='green')} ({steps} step{'s' if steps != 1 else ''})")
    if failed:
        sys.exit(EXIT_INVALID)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@with_var_options
@click.option("--dry-run", is_flag=True, help="Show what each step would do; change nothing.")
@click.option("--tags", "tags", metavar="T[,T...]", default="", help="Run only steps with these tags.")
@click.option("--skip-tags", "skip_tags", metavar="T[,T...]", default="", help="Skip steps with these tags.")
@click.option("--max-parallel", type=click.IntRange(min=1), help="Cap on steps running at once.")
@click.option(
    "--output",
    "output",
    type=click.Choice(["auto", "pretty", "plain", "json"]),
    default="auto",
    show_default=True,
    help="Live view on a terminal, plain lines, or JSON events.",
)
@click.option("--report", type=click.Path(dir_okay=False), help="Write the whole run as JSON to this file.")
@click.option("--junit", type=click.Path(dir_okay=False), help="Write a JUnit XML report to this file.")
@click.option("-v", "--verbose", is_flag=True, help="Show step output on success too.")
@click.option("--no-history", is_flag=True, help="Do not record this run in the history.")
@debug_option
def play(
    file: str,
    cli_vars: tuple[str, ...],
    vars_files: tuple[str, ...],
    dry_run: bool,
    tags: str,
    skip_tags: str,
    max_parallel: int | None,
    output: str,
    report: str | None,
    junit: str | None,
    verbose: bool,
    no_history: bool,
) -> None:
    """Run a playbook.

    Exit codes: 0 every step ok (or skipped, or failed under continue_on_error);
    1 a step failed; 2 the playbook or command line is invalid; 130 interrupted
    (Ctrl-C); 143 terminated (SIGTERM).

    \b
    Examples:
      runbook play playbooks/hello.yml
      runbook play site.yml -e env=prod --tags deploy --report run.json
      runbook play site.yml --dry-run
      runbook play site.yml --output json | jq -c 'select(.event == "step_finished")'
    """
    from runner.play import play_file

    sys.exit(
        play_file(
            file,
            cli_vars=cli_vars,
            vars_files=vars_files,
            dry_run=dry_run,
            tags=_split(tags),
            skip_tags=_split(skip_tags),
            max_parallel=max_parallel,
            output=output,
            report=report,
            junit=junit,
            verbose=verbose,
            record=not no_history,
        )
    )


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@cli.command()
@debug_option
def schema() -> None:
    """Print the combined JSON Schema of playbooks (built-in and plugin handlers).

    Point editors at it with a first line in the playbook:

    \b
      # yaml-language-server: $schema=path/to/playbook.schema.json

    \b
    Examples:
      runbook schema > playbook.schema.json
      runbook schema | jq '.["$defs"].args | keys'
    """
    from runner.checks import combined_schema
    from runner.schema import dumps

    click.echo(dumps(combined_schema()[0]), nl=False)


@cli.command()
@click.argument("name", required=False)
@debug_option
def tasks(name: str | None) -> None:
    """List the handlers, or show one handler's arguments, results and an example.

    \b
    Examples:
      runbook tasks
      runbook tasks copy
    """
    from runner.registry import all_handlers
    from runner.taskdoc import describe_handler, list_handlers

    handlers = all_handlers()
    if name is None:
        echo(list_handlers(handlers, style))
        return
    if name not in handlers:
        from runner.diagnostics import did_you_mean
        from runner.errors import UsageError

        hint = did_you_mean(name, handlers)
        raise UsageError(
            f"unknown handler '{name}'" + (f"; {hint}" if hint else "") + " (runbook tasks lists them)"
        )
    echo(describe_handler(handlers[name], style))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--http", "http_address", metavar="HOST:PORT", help="Serve /healthz, /runs and a status page.")
@click.option("--http-token", metavar="TOKEN", envvar="RUNBOOK_HTTP_TOKEN", help="Require this bearer token.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds runs get to finish on stop.",
)
@click.option(
    "--unhealthy-after",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Failures in a row that make /healthz answer 503.",
)
@click.option(
    "--log-format",
    type=click.Choice(["plain", "json"]),
    default="plain",
    show_default=True,
    help="Log lines' format.",
)
@vault_key_option
@debug_option
def schedule(
    files: tuple[str, ...],
    http_address: str | None,
    http_token: str | None,
    grace: float,
    unhealthy_after: int,
    log_format: str,
) -> None:
    """Run playbooks on their schedule: until stopped.

    Each playbook needs a schedule: line, an "every ..." phrase or a cron expression.
    Each run is a child process, recorded in the history with trigger "schedule".
    SIGTERM or Ctrl-C: no new runs; running ones get --grace seconds, then are
    cancelled; exit 0. SIGHUP: read the files again.

    \b
    Examples:
      runbook schedule playbooks/monitor.yml playbooks/nightly-backup.yml
      runbook schedule jobs/*.yml --http 127.0.0.1:8321 --log-format json
      curl -s 127.0.0.1:8321/healthz
    """
    from runner.daemon import Daemon, Logger

    log = Logger(log_format)
    daemon = Daemon(files, grace=grace, unhealthy_after=unhealthy_after, log=log)
    try:
        daemon.load()
    except RunbookError as exc:
        for line in str(exc).splitlines():
            echo(line, err=True)
        sys.exit(exc.exit_code)
    if http_address:
        from runner.statuspage import start_status_server

        server = start_status_server(daemon, http_address, http_token)
        log("http", f"status page on {server.url}/ (health: {server.url}/healthz)", url=server.url)
    sys.exit(daemon.run())


@cli.group()
def vault() -> None:
    """Encrypt values and files so playbooks can live in git without their secrets.

    The key comes from --vault-key-file, RUNBOOK_VAULT_KEY (the key text) or
    RUNBOOK_VAULT_KEY_FILE. A key file holds a generated key or a passphrase.

    \b
    Examples:
      runbook vault keygen --out ~/.config/runbook/vault.key
      printf %s "$TOKEN" | runbook vault encrypt-string --name api_token --vault-key-file vault.key
      runbook vault encrypt vars/prod.yml --vault-key-file vault.key
    """


@vault.command()
@click.option("--out", type=click.Path(dir_okay=False), help="Write the key to this file (mode 0600).")
@debug_option
def keygen(out: str | None) -> None:
    """Make a new random vault key (256 bits).

    \b
    Examples:
      runbook vault keygen --out vault.key
      export RUNBOOK_VAULT_KEY="$(runbook vault keygen)"
    """
    from runner.vault import generate_key

    key = generate_key()
    if out is None:
        click.echo(key)
        return
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{out} exists: keep it (it may decrypt your secrets), or remove it first") from None
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    echo(f"wrote a new vault key to {out} (mode 0600); keep it out of git", err=True)


@vault.command("encrypt-string")
@click.option("--name", default="secret", show_default=True, help="The YAML key to print before the value.")
@vault_key_option
@debug_option
def encrypt_string(name: str) -> None:
    """Encrypt one value read from stdin (or typed at a prompt); print a YAML snippet.

    The value is never taken from the command line, where shell history and process
    lists would keep it. One trailing newline of piped input is dropped.

    \b
    Examples:
      printf %s "$DB_PASSWORD" | runbook vault encrypt-string --name db_password
      runbook vault encrypt-string --name api_token     # prompts, without echo
    """
    from runner.vault import KEYS, encrypt, yaml_snippet

    key = KEYS.key()
    if sys.stdin.isatty():
        value = click.prompt("value to encrypt", hide_input=True, confirmation_prompt=True, err=True)
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
    if not value:
        raise UsageError("nothing to encrypt: the value is empty")
    click.echo(yaml_snippet(name, encrypt(value, key)), nl=False)


def _vault_file(file: str) -> tuple[Any, str]:
    from runner.loader import read_text
    from runner.vault import KEYS

    return KEYS.key(), read_text(Path(file))


@vault.command("encrypt")
@click.argument("file", type=click.Path(dir_okay=False))
@vault_key_option
@debug_option
def encrypt_file(file: str) -> None:
    """Encrypt a whole file (a vars file, say) in place, atomically.

    \b
    Examples:
      runbook vault encrypt vars/prod.yml --vault-key-file vault.key
    """
    from runner.reports import write_atomically
    from runner.vault import encrypt, is_encrypted

    key, text = _vault_file(file)
    if is_encrypted(text):
        raise UsageError(f"{file} is encrypted already")
    write_atomically(Path(file), encrypt(text, key), keep_mode=True)
    echo(f"encrypted {file}", err=True)


@vault.command("decrypt")
@click.argument("file", type=click.Path(dir_okay=False))
@vault_key_option
@debug_option
def decrypt_file(file: str) -> None:
    """Decrypt a whole file in place, atomically.

    \b
    Examples:
      runbook vault decrypt vars/prod.yml --vault-key-file vault.key
    """
    from runner.reports import write_atomically
    from runner.vault import decrypt, is_encrypted

    key, text = _vault_file(file)
    if not is_encrypted(text):
        raise UsageError(f"{file} is not encrypted")
    write_atomically(Path(file), _decrypted(file, text, key, decrypt), keep_mode=True)
    echo(f"decrypted {file}", err=True)


@vault.command("view")
@click.argument("file", type=click.Path(dir_okay=False))
@vault_key_option
@debug_option
def view(file: str) -> None:
    """Print an encrypted file's text, leaving the file as it is.

    \b
    Examples:
      runbook vault view vars/prod.yml --vault-key-file vault.key | less
    """
    from runner.vault import decrypt, is_encrypted

    key, text = _vault_file(file)
    if not is_encrypted(text):
        raise UsageError(f"{file} is not encrypted")
    click.echo(_decrypted(file, text, key, decrypt), nl=False)


def _decrypted(file: str, text: str, key: Any, decrypt: Any) -> str:
    from runner.vault import VaultError

    try:
        return str(decrypt(text, key))
    except VaultError as exc:
        raise VaultError(f"{file}: {exc}") from None


@cli.command()
@click.option("--playbook", metavar="NAME", help="Only runs of this playbook (its name).")
@click.option(
    "--status",
    type=click.Choice(["running", "ok", "failed", "cancelled", "interrupted", "skipped"]),
    help="Only runs that ended so.",
)
@click.option("--trigger", type=click.Choice(["manual", "schedule"]), help="Only runs started so.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@debug_option
def history(playbook: str | None, status: str | None, trigger: str | None, limit: int, as_json: bool) -> None:
    """List recent runs, newest first.

    \b
    Examples:
      runbook history
      runbook history --playbook nightly-backup --status failed --limit 5
      runbook history --json | jq '.[0].id'
    """
    from runner.history import History
    from runner.historyview import runs_table

    store = History()
    store.mark_interrupted()
    runs = store.runs(playbook=playbook, status=status, trigger=trigger, limit=limit)
    if as_json:
        click.echo(json.dumps(runs, indent=2, ensure_ascii=False))
    else:
        echo(runs_table(runs, style))


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run in the --report JSON format.")
@debug_option
def show(run_id: str, as_json: bool) -> None:
    """Show one run: its steps, statuses, durations, errors and output.

    RUN_ID may be a unique prefix of the id (runbook history lists them).

    \b
    Examples:
      runbook show 18f3a9c2b
      runbook show 18f3a9c2b --json | jq '.steps[] | select(.status == "failed")'
    """
    from runner.history import History
    from runner.historyview import run_text

    store = History()
    store.mark_interrupted()
    report = store.report(run_id)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        echo(run_text(report, style))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: run the CLI and turn errors into exit codes."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("RUNBOOK_DEBUG") == "1"
    try:
        cli.main(args=args, prog_name="runbook", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_INVALID)
    except click.exceptions.Abort:
        echo("runbook: aborted", err=True)
        sys.exit(130)
    except RunbookError as exc:
        if debug:
            raise
        from runner.masking import SECRETS

        echo(f"runbook: error: {SECRETS.text(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:
        if debug:
            raise
        echo(
            f"runbook: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback, and please report it)",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":  # pragma: no cover
    main()
