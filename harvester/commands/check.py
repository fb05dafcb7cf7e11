"""`harvester check [--json]`: does the configured key work for the configured call?

One request, for the output the provider's own documentation uses as its example
(Altmetric ID 241939), through the configured endpoint: a 200 or a 404 means the key
is accepted (a 404 only says that output has no attention data); a 401/403 that it is
not, or not for this call (a free key cannot use the fetch call). It prints the
rate-limit and tweet-quota headers the server sent and the rate the harvester would
start at. Exit 0 if the key works, 3 if it is refused, 1 if the check could not tell
(the API unreachable, or failing). A connection the settings forbid (a TLS
certificate that does not verify, a proxy asking for credentials) is one line on
stderr that names the setting that fixes it, and exit 1.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass

from harvester.commands.context import Invocation
from harvester.config import Settings, load_api_key
from harvester.errors import CommandError
from harvester.harvest.client import AltmetricClient, FetchResult
from harvester.harvest.ratelimit import RateController
from harvester.harvest.ratestate import LEARNED_RATE_KEY, LearnedRate, RatePolicy
from harvester.model import ExitCode, Outcome
from harvester.store import Store

PROBE = ("id", "241939")  # the provider's documented example output
KEY_WORKS = (Outcome.OK, Outcome.NOT_FOUND, Outcome.RATE_LIMITED, Outcome.QUOTA_EXHAUSTED)


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What `check --json` prints."""

    endpoint: str
    url: str  # the request, without the key
    proxy: str  # the proxy it went through and where that came from ("none"), no password
    key_works: bool | None  # None: the check could not tell
    http_status: int | None
    verdict: str  # in words
    hourly_limit: int | None
    hourly_remaining: int | None
    daily_limit: int | None
    daily_remaining: int | None
    tweet_limit: int | None
    tweet_remaining: int | None
    configured_per_s: float | str
    learned_per_s: float | None  # what earlier runs on this store learned
    allowance_per_s: float | None  # what the headers leave, spread to the window's end
    would_use_per_s: float  # the rate a harvest would start at: the least of those

    def exit_code(self) -> ExitCode:
        if self.key_works is None:
            return ExitCode.FAILURE
        return ExitCode.OK if self.key_works else ExitCode.KEY_REJECTED


def cmd_check(invocation: Invocation, *, as_json: bool) -> ExitCode:
    settings = invocation.settings()
    key = load_api_key(settings)

    async def probe() -> CheckReport:
        async with AltmetricClient.for_api(settings.api, key) as client:
            result = await client.fetch(*PROBE)
            if result.outcome is Outcome.SETUP_ERROR and not as_json:
                raise CommandError(result.error or str(result.outcome))
            return _report(settings, result, client.proxy.shown())

    report = asyncio.run(probe())
    print(json.dumps(asdict(report), indent=2) if as_json else render_check(report))
    return report.exit_code()


def _report(settings: Settings, result: FetchResult, proxy: str) -> CheckReport:
    """The report of one answer; the rate is the one the harvest's own controller would
    choose from the config, what the store learned and the headers (made in the event
    loop, as the controller's token bucket wants)."""
    limits = result.limits
    learned = _learned(settings)
    rate = RateController(RatePolicy.of(settings.rate), learned=learned)
    rate.on_allowance(rate.admit(), limits.hourly_remaining, limits.daily_remaining)
    allowance = rate.view().allowance_per_s
    configured = settings.rate.requests_per_s
    call = "fetch/" if settings.api.endpoint == "fetch" else ""
    return CheckReport(
        endpoint=settings.api.endpoint,
        url=f"{settings.api.base_url.rstrip('/')}/{call}{PROBE[0]}/{PROBE[1]}",
        proxy=proxy,
        key_works=_key_works(result),
        http_status=result.http_status,
        verdict=_verdict(settings, result),
        hourly_limit=limits.hourly_limit,
        hourly_remaining=limits.hourly_remaining,
        daily_limit=limits.daily_limit,
        daily_remaining=limits.daily_remaining,
        tweet_limit=limits.tweet_limit,
        tweet_remaining=limits.tweet_remaining,
        configured_per_s="auto" if configured is None else configured,
        learned_per_s=None if learned is None else learned.requests_per_s,
        allowance_per_s=allowance,
        would_use_per_s=round(rate.rate_per_s, 4),
    )


def _key_works(result: FetchResult) -> bool | None:
    if result.outcome in KEY_WORKS:
        return True
    if result.outcome is Outcome.UNAUTHORIZED:
        return False
    return None


def _verdict(settings: Settings, result: FetchResult) -> str:
    endpoint = settings.api.endpoint
    outcome = result.outcome
    if outcome is Outcome.OK:
        return f"the key works for the {endpoint} call"
    if outcome is Outcome.NOT_FOUND:
        return f"the key works for the {endpoint} call (the example output answered 404)"
    if outcome in (Outcome.RATE_LIMITED, Outcome.QUOTA_EXHAUSTED):
        return f"the key is known, but the {endpoint} call is refusing it for now ({outcome})"
    if outcome is Outcome.UNAUTHORIZED:
        hint = (
            '; a free key works with the counts call: api.endpoint = "counts"'
            if endpoint == "fetch"
            else ""
        )
        return f"the API refused the key for the {endpoint} call (HTTP {result.http_status}){hint}"
    return f"could not tell: {result.error or outcome}"


def _learned(settings: Settings) -> LearnedRate | None:
    """What earlier runs on the configured store learned, if there is one."""
    if not settings.store.path.exists():
        return None
    try:
        with Store(settings.store.path, read_only=True) as store:
            saved = store.state.load(LEARNED_RATE_KEY)
    except Exception:  # an old or damaged store: the check is about the key
        return None
    return None if saved is None else LearnedRate.from_json(saved[0])


def render_check(report: CheckReport) -> str:
    lines = [
        f"call       {report.endpoint}: GET {report.url}",
        f"proxy      {report.proxy}",
        f"key        {report.verdict}",
        f"hourly     {_allowance(report.hourly_remaining, report.hourly_limit)}",
        f"daily      {_allowance(report.daily_remaining, report.daily_limit)}",
        f"tweet IDs  {_allowance(report.tweet_remaining, report.tweet_limit)}",
    ]
    configured = report.configured_per_s
    rate = [f"a harvest would start at {report.would_use_per_s:g}/s"]
    rate += [f"configured {configured if isinstance(configured, str) else f'{configured:g}/s'}"]
    if report.learned_per_s is not None:
        rate.append(f"learned {report.learned_per_s:g}/s")
    if report.allowance_per_s is not None:
        rate.append(f"the allowance left spread to its window's end: {report.allowance_per_s:g}/s")
    lines.append("rate       " + "; ".join(rate))
    return "\n".join(lines)


def _allowance(remaining: int | None, limit: int | None) -> str:
    if remaining is None and limit is None:
        return "(not sent)"
    left = "?" if remaining is None else f"{remaining:,}"
    return f"{left} left" + ("" if limit is None else f" of {limit:,}")
