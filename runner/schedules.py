"""A playbook's ``schedule:``: an ``every ...`` phrase or a five-field cron expression.

Phrases are parsed into the ``schedule`` package's API, one private job each
(``every 5 minutes`` is ``every(5).minutes``, ``every monday at 09:00`` is
``every().monday.at("09:00")``, ``every 10 to 20 seconds`` is ``every(10).to(20).seconds``),
and the daemon reads the job's ``next_run`` and calls ``run()`` to move it on; the
package's own ``run_pending`` loop is not used, since the daemon waits for children
and signals as well as for time. Cron expressions use croniter. Both accept a time zone
(the playbook's ``timezone:``, or a trailing IANA name in the phrase), else local time.

Fixed intervals (``every 10 seconds``, ``every 2 hours``) keep to the phase of their
first run, which is one interval after the daemon starts plus an offset fixed per
playbook (``spread``, from a hash of its name, as Jenkins' ``H`` does): a hundred
playbooks on the same interval start spread over it (at most a minute) instead of all
at the same instant.

Every problem is found when the schedule is parsed (at validation, and when the daemon
starts or reloads), with a message that says what would be accepted; the package's own
messages are not shown, since some of them are not formatted.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from runner.errors import EXIT_INVALID, RunbookError

UNITS = {"second": "seconds", "minute": "minutes", "hour": "hours", "day": "days", "week": "weeks"}
SPREAD_WITHIN = 60.0  # seconds: the widest offset ``spread`` gives a fixed interval
UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
AT_FORMATS = {
    "days": ("HH:MM or HH:MM:SS", r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$"),
    "hours": (":MM or MM:SS", r"^([0-5]\d)?:[0-5]\d$"),
    "minutes": (":SS", r"^:[0-5]\d$"),
}
_PHRASE = re.compile(
    r"^every\s+(?:(?P<count>\d+)(?:\s+to\s+(?P<upto>\d+))?\s+)?(?P<unit>[a-z]+)"
    r"(?:\s+at\s+(?P<at>\S+))?(?:\s+(?:in\s+)?(?P<zone>[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*))?$",
    re.IGNORECASE,
)
EXAMPLES = '"every 5 minutes", "every day at 02:30", "every monday at 09:00", or cron "30 2 * * *"'


class ScheduleError(RunbookError):
    """A schedule that cannot be understood; the message says what would be."""

    exit_code = EXIT_INVALID


def zone(name: str | None) -> tzinfo | None:
    if not name:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Paris or UTC)"
        ) from None


@dataclass
class Schedule:
    """When a playbook runs: ``next_run`` (epoch seconds) and ``advance()`` after each run."""

    text: str
    timezone: str | None = None
    period: float = 0.0  # the longest gap between two runs, for catch_up
    # A fixed interval ("every 10 seconds"): runs keep to the phase of the first one, so a
    # late start does not push every later run back (the schedule package counts from now).
    interval: float = 0.0
    job: Any = None  # a schedule.Job, for phrases
    cron: Any = None  # a croniter, for cron expressions
    _next: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.job is not None:
            self._next = self._job_next()

    @property
    def next_run(self) -> float:
        return self._next

    def _job_next(self) -> float:
        return float(self.job.next_run.timestamp())  # naive local time, as the package keeps it

    def spread(self, key: str) -> None:
        """Move a fixed interval's runs by an offset within the interval (at most
        ``SPREAD_WITHIN``) that ``key``, the playbook's name, fixes."""
        if not self.interval or self.job is None:
            return
        fraction = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32
        self._next += fraction * min(self.interval, SPREAD_WITHIN)
        self.job.next_run = datetime.fromtimestamp(self._next)

    def next_run_iso(self) -> str:
        when = datetime.fromtimestamp(self.next_run).astimezone(zone(self.timezone))
        return when.isoformat(timespec="seconds")

    def advance(self) -> None:
        """Move on to the next run after now (runs missed meanwhile are not replayed)."""
        if self.job is not None:
            planned = self.next_run
            self.job.run()  # the job's function does nothing; run() computes the next time
            if self.interval:
                passed = max(0, math.floor((time.time() - planned) / self.interval))
                self.job.next_run = datetime.fromtimestamp(planned + (passed + 1) * self.interval)
            self._next = self._job_next()
            return
        now = time.time()
        while self._next <= now:
            self._next = float(self.cron.get_next(float))

    def missed_since(self, last_start: float, now: float | None = None) -> bool:
        """Whether a run came due between ``last_start`` and now (for ``catch_up``)."""
        now = time.time() if now is None else now
        if self.cron is not None:
            from croniter import croniter

            start = datetime.fromtimestamp(
                last_start, zone(self.timezone) or datetime.now().astimezone().tzinfo
            )
            return float(croniter(self.text, start).get_next(float)) <= now
        return now - last_start > self.period


def parse_schedule(text: str, timezone: str | None = None, now: datetime | None = None) -> Schedule:
    """Parse ``schedule:``; raise ScheduleError saying what would be accepted.

    ``now`` (for cron expressions) is when the first run is counted from; phrases always
    count from the present, as the ``schedule`` package does."""
    text = " ".join(str(text).split())
    if not text:
        raise ScheduleError(f"the schedule is empty; write for example {EXAMPLES}")
    zone(timezone)
    if text.lower().startswith("every"):
        return _phrase(text, timezone)
    fields = text.split()
    if len(fields) == 5:
        return _cron(text, timezone, now)
    raise ScheduleError(
        f"{text!r} is neither an 'every ...' phrase nor a five-field cron expression"
        f" ({len(fields)} field{'s' if len(fields) != 1 else ''}); write for example {EXAMPLES}"
    )


def _cron(text: str, timezone: str | None, now: datetime | None) -> Schedule:
    from croniter import croniter

    if not croniter.is_valid(text):
        raise ScheduleError(
            f"{text!r} is not a valid cron expression (minute hour day-of-month month day-of-week,"
            ' such as "*/5 * * * *" or "0 2 * * 1-5")'
        )
    local = zone(timezone) or datetime.now().astimezone().tzinfo
    start = now.astimezone(local) if now is not None else datetime.now(local)
    cron = croniter(text, start)
    first = float(cron.get_next(float))
    # The longest gap between runs, from the next year's runs: enough for catch_up's question.
    probe, previous, gap = croniter(text, start), first, 0.0
    for _ in range(400):
        current = float(probe.get_next(float))
        gap, previous = max(gap, current - previous), current
        if current - first > 366 * 86400:
            break
    return Schedule(text=text, timezone=timezone, period=gap, cron=cron, _next=first)


def _phrase(text: str, timezone: str | None) -> Schedule:
    import schedule

    match = _PHRASE.match(text)
    if not match:
        raise ScheduleError(f"cannot read the schedule {text!r}; write for example {EXAMPLES}")
    count = int(match["count"]) if match["count"] else 1
    upto = int(match["upto"]) if match["upto"] else None
    word, at = match["unit"].lower(), match["at"]
    if match["zone"]:
        if timezone and match["zone"] != timezone:
            raise ScheduleError(f"the schedule names time zone {match['zone']} but timezone: is {timezone}")
        timezone = match["zone"]
        zone(timezone)
    if count < 1 or (upto is not None and upto <= count):
        raise ScheduleError(f"{text!r}: the interval must be at least 1, and 'N to M' needs M above N")
    job = schedule.Scheduler().every(count)
    if upto is not None:
        job = job.to(upto)
    if word in WEEKDAYS or word.rstrip("s") in WEEKDAYS:
        if count != 1 or upto is not None:
            raise ScheduleError(
                f"{text!r}: a weekday schedule runs every week; for other rhythms use cron,"
                ' such as "0 9 * * 1" (Mondays at 09:00)'
            )
        job = getattr(job, word.rstrip("s") if word.endswith("s") else word)
        unit = "days"  # at() on a weekday job takes a time of day
        period = UNIT_SECONDS["weeks"]
    else:
        unit = UNITS.get(word) or (word if word in UNIT_SECONDS else "")
        if not unit:
            if word in ("weekday", "weekdays", "weekend", "weekends", "month", "months", "year", "years"):
                hint = ' such as "0 9 * * 1-5" (weekdays at 09:00) or "0 3 1 * *" (the 1st of each month)'
                raise ScheduleError(
                    f"{text!r}: 'every {word}' is not a phrase runbook knows; use cron,{hint}"
                )
            raise ScheduleError(
                f"{text!r}: unknown unit {word!r} (seconds, minutes, hours, days, weeks or a weekday)"
            )
        job = getattr(job, unit)
        period = UNIT_SECONDS[unit] * (upto or count)
    if at is not None:
        fmt = AT_FORMATS.get(unit)
        if fmt is None:
            raise ScheduleError(f"{text!r}: 'at' needs a schedule in days, hours, minutes or a weekday")
        if not re.match(fmt[1], at):
            raise ScheduleError(f"{text!r}: {at!r} is not a time of the form {fmt[0]} for this schedule")
        try:
            job = job.at(at, timezone) if timezone else job.at(at)
        except (schedule.ScheduleError, ValueError) as exc:  # pytz missing or unknown zone
            raise ScheduleError(f"{text!r}: {exc}") from None
    job = job.do(_nothing)
    fixed = at is None and upto is None and unit in UNIT_SECONDS and job.start_day is None
    return Schedule(
        text=text, timezone=timezone, period=float(period), job=job, interval=float(period) if fixed else 0.0
    )


def _nothing() -> None:
    """The job's function: the daemon starts the run itself when ``next_run`` comes."""
