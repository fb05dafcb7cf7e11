"""What `harvester status` reports. Read-only: it opens the store read-only, so it
can run while the daemon writes (WAL lets readers and the writer proceed together).

Status states facts and predicts only from a running daemon: the ETA is taken at that
daemon's own recent rate, never at a rate left over from earlier runs, for the jobs
that can run now (those waiting for a later time are counted apart, with when the
first may run), and the quota's next mode change is predicted only while a daemon
harvests (nothing changes modes otherwise). With no daemon running, both are null;
the throughput figures are then history, and are shown as such.
"""

# long: one report; its sections (jobs, daemon, rate, quota, errors) are read and shown
# side by side, each in a few short functions.
from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from harvester.commands.context import Invocation
from harvester.config import QuotaSettings, RateSettings
from harvester.harvest.quota import default_up_thresholds, mode_for_usage, next_mode_change
from harvester.harvest.ratestate import LEARNED_RATE_KEY, LearnedRate
from harvester.harvest.schedule import SCHEDULE_KEY
from harvester.model import ExitCode, JobState, QuotaMode, iso_utc, parse_iso
from harvester.scheduling import ScheduleSettings, parse_age
from harvester.store import Store
from harvester.store.jobs import waiting_jobs
from harvester.store.state import HEARTBEAT_STALE_S

THROUGHPUT_WINDOWS_S = {"last_1m": 60, "last_5m": 300, "last_15m": 900}
ETA_WINDOW_S = 300.0  # the ETA's rate: the running daemon's last 5 minutes at most
QUOTA_VIEW_FRESH_S = 600.0  # the daemon's quota view is believed for this long


def cmd_status(invocation: Invocation, *, as_json: bool) -> ExitCode:
    """`harvester status [--json]`."""
    settings = invocation.settings()
    with Store(settings.store.path, read_only=True) as store:
        status = collect_status(store, settings.quota, settings.rate, settings.schedule)
    status = dataclasses.replace(
        status,
        config=None if settings.source is None else str(settings.source),
        quota=dataclasses.replace(status.quota, applies=settings.api.endpoint == "fetch"),
    )
    print(json.dumps(status.as_json(), indent=2) if as_json else render_status(status))
    return ExitCode.OK


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What a daemon's last readable heartbeat said. Its own figures are passed on as
    it holds them (this version writes text, numbers and a QuotaMode's value)."""

    pid: int
    started_at: object  # ISO 8601 UTC text
    last_heartbeat_s_ago: float
    requests_per_s: object  # the rate allowed
    achieved_per_s: object
    quota_mode: object
    concurrency: object
    rate_limited_by: object  # configured, learned, hourly_allowance, daily_allowance, auto
    allowance_per_s: object = None  # what the hourly/daily headers leave, spread out


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    running: bool
    heartbeat: Heartbeat | None = None  # None: no heartbeat this version can read

    def as_json(self) -> dict[str, object]:
        """`running`, then the heartbeat's fields, if any, at the same level."""
        return {"running": self.running, **(asdict(self.heartbeat) if self.heartbeat else {})}


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    limit: int
    used: int
    remaining: int
    mode: QuotaMode
    source: str  # "server" or "ledger": whose count `used` is
    window_s: float
    next_mode: QuotaMode | None  # predicted only while a daemon runs
    next_change_at: str | None
    applies: bool = True  # false with the counts call: its answers hold no tweet IDs


@dataclass(frozen=True, slots=True)
class RateStatus:
    """The request rate: as configured (in the config `status` read), as learned from
    the server's refusals (saved by the daemon, kept across restarts), and as the
    running daemon allows it now, with what sets it."""

    configured_per_s: float | str  # a number, or "auto"
    configured_burst: int
    learned_per_s: float | None  # None: no refusal taught anything yet
    learned_burst: int | None
    learned_at: str | None
    allowed_per_s: float | None  # the running daemon's; None when none runs
    limited_by: str | None  # configured, learned, hourly_allowance, daily_allowance, auto


@dataclass(frozen=True, slots=True)
class ScheduledTask:
    """One `[schedule]` task: its period, and when it last ran and runs next (known
    from a running daemon, or a period after the last run; None: at the next start)."""

    every: str
    every_s: float
    next_at: str | None
    last_at: str | None
    last: object  # what the last run did (pages, queued, requeued...), as the daemon saved it


@dataclass(frozen=True, slots=True)
class ErrorCount:
    state: JobState
    error: str
    count: int


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What `status` reports; `as_json` is the document `status --json` prints."""

    store: str  # the store's path
    jobs: dict[JobState, int]  # every state, in JobState's order
    total: int
    responses: int
    throughput_per_s: dict[str, float]  # responses stored per second, per window
    errors: list[ErrorCount]  # the commonest first
    quota: QuotaStatus
    daemon: DaemonStatus
    eta_s: float | None  # for the jobs that can run now (not those waiting)
    waiting: int  # pending jobs that may not run before a later time (a retry, Retry-After)
    next_due_at: str | None  # when the first of those may run
    rate: RateStatus
    schedule: dict[str, ScheduledTask]  # the enabled ones
    config: str | None = None  # the config file read; None: the built-in defaults

    def as_json(self) -> dict[str, object]:
        return {
            "store": self.store,
            "config": self.config,
            "jobs": {str(state): count for state, count in self.jobs.items()},
            "total": self.total,
            "responses": self.responses,
            "throughput_per_s": dict(self.throughput_per_s),
            "errors": [asdict(entry) for entry in self.errors],
            "quota": asdict(self.quota),
            "daemon": self.daemon.as_json(),
            "eta_s": self.eta_s,
            "waiting": self.waiting,
            "next_due_at": self.next_due_at,
            "rate": asdict(self.rate),
            "schedule": {name: asdict(task) for name, task in self.schedule.items()},
        }


def collect_status(
    store: Store,
    quota_settings: QuotaSettings,
    rate_settings: RateSettings,
    schedule_settings: ScheduleSettings | None = None,
) -> StatusReport:
    jobs = {JobState(state): count for state, count in store.jobs.counts_by_state().items()}
    now_s = time.time()
    daemon = daemon_status(store, now_s)
    throughput = {
        name: round(store.responses.since(now_s - window_s) / window_s, 3)
        for name, window_s in THROUGHPUT_WINDOWS_S.items()
    }
    errors = [
        ErrorCount(JobState(state), error, count) for state, error, count in store.jobs.top_errors()
    ]
    waiting, next_due_at = waiting_jobs(store.conn, iso_utc(now_s))
    return StatusReport(
        store=str(store.path),
        jobs=jobs,
        total=sum(jobs.values()),
        responses=store.responses.count(),
        throughput_per_s=throughput,
        errors=errors,
        quota=quota_status(store, quota_settings, now_s, predict=daemon.running),
        daemon=daemon,
        eta_s=eta_s(jobs, daemon_rate_per_s(store, daemon, now_s), waiting=waiting),
        waiting=waiting,
        next_due_at=next_due_at,
        rate=rate_status(store, rate_settings, daemon),
        schedule=schedule_status(store, schedule_settings or ScheduleSettings(), daemon),
    )


def rate_status(store: Store, settings: RateSettings, daemon: DaemonStatus) -> RateStatus:
    """Configured, learned (whatever daemon saved it, running or not) and allowed now."""
    saved = store.state.load(LEARNED_RATE_KEY)
    learned = None if saved is None else LearnedRate.from_json(saved[0])
    heartbeat = daemon.heartbeat if daemon.running else None
    allowed = heartbeat.requests_per_s if heartbeat is not None else None
    return RateStatus(
        configured_per_s="auto" if settings.requests_per_s is None else settings.requests_per_s,
        configured_burst=settings.burst,
        learned_per_s=None if learned is None else learned.requests_per_s,
        learned_burst=None if learned is None else learned.burst,
        learned_at=None if learned is None else iso_utc(learned.learned_at_s),
        allowed_per_s=allowed if isinstance(allowed, int | float) else None,
        limited_by=None if heartbeat is None else _text_or_none(heartbeat.rate_limited_by),
    )


def schedule_status(
    store: Store, settings: ScheduleSettings, daemon: DaemonStatus
) -> dict[str, ScheduledTask]:
    """The configured tasks, with their last runs (saved by any daemon) and next runs
    (the running daemon's heartbeat says; otherwise a period after the last)."""
    saved = _saved_json(store, SCHEDULE_KEY)
    live = _saved_json(store, "heartbeat").get("schedule") if daemon.running else None
    live = live if isinstance(live, dict) else {}
    periods = {
        "discover": settings.discover_every,
        "refresh": settings.refresh_every,
        "export": settings.export_every,
    }
    for name, said in live.items():  # a running daemon's tasks, whatever config this read
        if not periods.get(name) and isinstance(said, dict) and said.get("every_s"):
            periods[name] = f"{said['every_s']:g}s"
    tasks = {}
    for name, every in periods.items():
        if not every:
            continue
        every_s = parse_age(every)
        entry = saved.get(name)
        entry = entry if isinstance(entry, dict) else {}
        last_at = _text_or_none(entry.get("last_at"))
        next_at = None if last_at is None else iso_utc(parse_iso(last_at) + every_s)
        said = live.get(name)
        live_next_at = _text_or_none(said.get("next_at")) if isinstance(said, dict) else None
        if live_next_at and (last_at is None or live_next_at > last_at):
            next_at = live_next_at  # the daemon's (a retry after a failure, say)
        tasks[name] = ScheduledTask(every, every_s, next_at, last_at, entry.get("last"))
    return tasks


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def daemon_rate_per_s(store: Store, daemon: DaemonStatus, now_s: float) -> float | None:
    """Responses the running daemon stored per second over its last 5 minutes (or
    since it started, if later); None when no daemon runs.

    Only responses fetched since the daemon's start count: a rate from an earlier
    run says nothing about this one. Stored responses rather than the heartbeat's
    achieved requests, because a refused request moves no job forward, and because
    they count from the daemon's first answers on."""
    if not daemon.running or daemon.heartbeat is None:
        return None
    started_at = daemon.heartbeat.started_at
    if not isinstance(started_at, str):
        return None
    try:
        started_s = parse_iso(started_at)
    except ValueError:
        return None
    since_s = max(started_s, now_s - ETA_WINDOW_S)
    return store.responses.since(since_s) / max(now_s - since_s, 1.0)


def daemon_status(store: Store, now_s: float) -> DaemonStatus:
    """Whether a daemon runs on this store, from its heartbeat (and its pid, if local).

    A heartbeat this version cannot read (another version's, or damaged) means "not
    known to run", never a crash: status must answer whatever the store holds."""
    heartbeat = _saved_json(store, "heartbeat")
    try:
        age_s = now_s - float(heartbeat["heartbeat_at_s"])
        pid = int(heartbeat["pid"])
    except (ValueError, TypeError, KeyError):
        return DaemonStatus(running=False)
    fresh = heartbeat.get("state") == "running" and age_s < HEARTBEAT_STALE_S
    seen = Heartbeat(
        pid=pid,
        started_at=heartbeat.get("started_at"),
        last_heartbeat_s_ago=round(age_s, 1),
        requests_per_s=heartbeat.get("requests_per_s"),
        achieved_per_s=heartbeat.get("achieved_per_s"),
        quota_mode=heartbeat.get("quota_mode"),
        concurrency=heartbeat.get("concurrency"),
        rate_limited_by=heartbeat.get("rate_limited_by"),
        allowance_per_s=heartbeat.get("allowance_per_s"),
    )
    return DaemonStatus(running=fresh and _process_exists(pid), heartbeat=seen)


def _process_exists(pid: int) -> bool:
    if pid <= 0:
        return False  # kill(0 or -1) would ask about whole process groups
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True


def eta_s(
    jobs: Mapping[JobState, int], rate_per_s: float | None, *, waiting: int = 0
) -> float | None:
    """Seconds until the jobs that can run now are done at the running daemon's rate;
    None when no daemon runs or it has stored nothing lately (no rate, no prediction).

    The `waiting` pending jobs are left out: one that may not run for a day (a
    Retry-After, a long backoff) is not done in seconds at any rate; `next_due_at`
    says when the first of them may run."""
    if rate_per_s is None:
        return None  # no daemon: nothing will get done, so no time to predict
    left = max(jobs[JobState.PENDING] - waiting, 0) + jobs[JobState.IN_PROGRESS]
    if left == 0:
        return 0.0
    return round(left / rate_per_s) if rate_per_s else None


class _QuotaView(NamedTuple):
    """The part of the daemon's saved quota view that status reads."""

    limit: int
    used: int
    mode: QuotaMode
    source: str
    up_thresholds: dict[QuotaMode, int]
    refused_until_s: float | None


def quota_status(
    store: Store, settings: QuotaSettings, now_s: float, *, predict: bool = True
) -> QuotaStatus:
    """Limit, used, remaining, mode and, if `predict`, the next expected change of
    the tweet quota's mode (null otherwise: without a daemon, no mode changes).

    The daemon's own view (it knows the server's count and a refusal) when it saved
    one lately, else what the ledger and the settings say.
    """
    view = _recent_quota_view(store, now_s)
    if view:
        limit, used, mode, source = view.limit, view.used, view.mode, view.source
        up_thresholds = view.up_thresholds
    else:
        limit = settings.limit
        used = store.ledger.count(settings.window_s)
        mode, source = mode_for_usage(used, limit, settings), "ledger"
        up_thresholds = default_up_thresholds(limit, settings)
    next_mode, next_at_s = None, None
    if predict:
        next_mode, next_at_s = _next_change(store, settings, mode, used, up_thresholds, now_s)
        if view and view.refused_until_s and mode == QuotaMode.NO_TWITTER:
            next_at_s = max(next_at_s or 0, view.refused_until_s)
    return QuotaStatus(
        limit=limit,
        used=used,
        remaining=max(0, limit - used),
        mode=mode,
        source=source,
        window_s=settings.window_s,
        next_mode=next_mode,
        next_change_at=iso_utc(next_at_s) if next_at_s else None,
    )


def _next_change(
    store: Store,
    settings: QuotaSettings,
    mode: QuotaMode,
    used: int,
    up_thresholds: dict[QuotaMode, int],
    now_s: float,
) -> tuple[QuotaMode | None, float | None]:
    """The quota ladder's next step and when, at the last hour's charge rate."""
    return next_mode_change(
        mode,
        used,
        settings,
        up_thresholds,
        frees_at_s=lambda target: store.ledger.frees_at(settings.window_s, target),
        charge_rate_per_s=store.ledger.charged_since(now_s - 3600) / 3600,
        now_s=now_s,
    )


def _recent_quota_view(store: Store, now_s: float) -> _QuotaView | None:
    """The daemon's quota view if it is recent and readable; None sends status to
    the ledger instead (a view saved by another version must not crash status)."""
    saved = _saved_json(store, "quota")
    try:
        if now_s - float(saved["at_s"]) >= QUOTA_VIEW_FRESH_S:
            return None
        refused_until_s = saved.get("refused_until_s")
        return _QuotaView(
            limit=int(saved["limit"]),
            used=int(saved["used"]),
            mode=QuotaMode(saved["mode"]),
            source=str(saved["source"]),
            up_thresholds={
                QuotaMode(mode): int(usage) for mode, usage in dict(saved["up_thresholds"]).items()
            },
            refused_until_s=None if refused_until_s is None else float(refused_until_s),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _saved_json(store: Store, key: str) -> dict[str, Any]:
    """A daemon_state entry as a dict; {} when absent or unreadable."""
    saved = store.state.load(key)
    try:
        value = json.loads(saved[0]) if saved else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _clock(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86_400)
    text = f"{rest // 3600}:{rest // 60 % 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


def _describe_daemon(daemon: DaemonStatus) -> str:
    heartbeat = daemon.heartbeat
    if heartbeat is None:
        return "not running"
    if not daemon.running:
        ago = _clock(max(heartbeat.last_heartbeat_s_ago, 0))
        return f"not running (last heartbeat {ago} ago, pid {heartbeat.pid})"
    parts = [f"pid {heartbeat.pid}", f"since {heartbeat.started_at}"]
    achieved, allowed = heartbeat.achieved_per_s, heartbeat.requests_per_s
    if isinstance(achieved, int | float) and isinstance(allowed, int | float):
        parts.append(f"{achieved:,.2f} req/s of {allowed:g} allowed")
    parts.append(f"concurrency {heartbeat.concurrency}")
    parts.append(f"quota mode {heartbeat.quota_mode}")
    return f"running ({', '.join(parts)})"


def render_status(status: StatusReport) -> str:
    """The status as a short table for people."""
    total = status.total or 1
    lines = [
        f"store  {status.store}",
        f"config {status.config or 'none (the built-in defaults)'}",
        f"daemon {_describe_daemon(status.daemon)}",
    ]
    lines += ["", "jobs"]
    for state in JobState:
        count = status.jobs[state]
        lines.append(f"  {state:<12}{count:>12,}  {count / total:6.1%}")
    lines.append(f"  {'total':<12}{status.total:>12,}")
    lines.append(f"responses stored {status.responses:,}")
    if status.eta_s:
        lines.append(
            f"eta for the jobs that can run now, at this daemon's recent rate: "
            f"{_clock(status.eta_s)}"
        )
    if status.waiting:
        lines.append(
            f"waiting {status.waiting:,} jobs may not run before a later time (a retry's "
            f"backoff, a Retry-After); the first at {status.next_due_at}"
        )
    lines.append(
        "throughput  "
        + "  ".join(
            f"{name.removeprefix('last_')}: {rate:,.1f}/s"
            for name, rate in status.throughput_per_s.items()
        )
        + ("" if status.daemon.running else "  (earlier runs; no daemon is running)")
    )
    lines.append(_describe_rate(status.rate) + _describe_allowance(status.daemon))
    lines.append(_describe_quota(status.quota))
    for name, task in status.schedule.items():
        lines.append(_describe_task(name, task))
    if status.errors:
        lines.append("")
        lines.append("commonest errors")
        for entry in status.errors:
            lines.append(f"  {entry.count:>8,}  {entry.state:<8} {entry.error}")
    return "\n".join(lines)


def _describe_rate(rate: RateStatus) -> str:
    configured = rate.configured_per_s
    per_s = configured if isinstance(configured, str) else f"{configured:g}/s"
    parts = [f"configured {per_s} burst {rate.configured_burst}"]
    if rate.learned_per_s is not None:
        parts.append(
            f"learned {rate.learned_per_s:g}/s burst {rate.learned_burst} at {rate.learned_at}"
        )
    if rate.allowed_per_s is not None:
        parts.append(f"allowed now {rate.allowed_per_s:g}/s ({rate.limited_by})")
    return "rate  " + "; ".join(parts)


def _describe_allowance(daemon: DaemonStatus) -> str:
    """The allowance the server's X-HourlyRateLimit-* or X-DailyRateLimit-* headers
    leave, spread to the window's end, as the running daemon paces by it."""
    heartbeat = daemon.heartbeat if daemon.running else None
    allowance = None if heartbeat is None else heartbeat.allowance_per_s
    if heartbeat is None or not isinstance(allowance, int | float):
        return ""
    kind = {
        "hourly_allowance": ("hourly", "Hourly", "hour"),
        "daily_allowance": ("daily", "Daily", "day"),
    }.get(str(heartbeat.rate_limited_by))
    if kind is None:
        return f"; the server's allowance headers leave {allowance:g}/s"
    adjective, header, window = kind
    return (
        f"; paced by the {adjective} allowance: {allowance:g}/s, what the server's "
        f"X-{header}RateLimit-Remaining leaves spread to the {window}'s end"
    )


def _describe_last(last: object) -> str:
    """What a task's last run did, in words (`pages 3, queued 250`), not a dict."""
    if not isinstance(last, dict) or not last:
        return "no result kept" if last is None else str(last)
    if "error" in last:
        return f"failed: {last['error']}"
    return ", ".join(
        f"{name.replace('_', ' ')} {value:,}"
        if isinstance(value, int) and not isinstance(value, bool)
        else f"{name.replace('_', ' ')} {value}"
        for name, value in last.items()
    )


def _describe_task(name: str, task: ScheduledTask) -> str:
    next_run = task.next_at or "at the daemon's next start"
    last_run = f"; last {task.last_at}: {_describe_last(task.last)}" if task.last_at else ""
    return f"schedule  {name} every {task.every}: next {next_run}{last_run}"


def _describe_quota(quota: QuotaStatus) -> str:
    if not quota.applies:
        return "tweet quota  none: the counts call (api.endpoint) brings no tweet IDs"
    change = (
        f", next: {quota.next_mode} at {quota.next_change_at}"
        if quota.next_mode and quota.next_change_at
        else ""
    )
    return (
        f"tweet quota {quota.used:,} of {quota.limit:,} used "
        f"({quota.remaining:,} left, {quota.source}); mode {quota.mode}{change}"
    )
