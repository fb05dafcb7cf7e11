"""`harvester discover --timeframe 1d [filters] [--max-pages N] [--restart]`: the
citations call's listing into the store, each output queued once.

The discovery itself is `harvest.discovery`'s; this command gives it a client, a rate
controller that starts from the rate earlier runs learned (and saves what this one
learned), a progress line on a terminal, and a summary. Killed, it resumes at the
next page when run again with the same query, and ends with the summary and exit code
of one clean run (what the pages before did is saved with the position). A running
daemon does the same on a schedule (`[schedule] discover_every`), inside its one rate
budget.

Where no store is, it creates one, as `enqueue` and `import` do, and says so once on
stderr; a store it created that ends with no job (the key refused, the API
unreachable) is removed again (`context.settle_new_store`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys

from harvester.commands.context import Invocation, settle_new_store
from harvester.config import Secret, Settings, load_api_key
from harvester.errors import HarvesterError, counted
from harvester.harvest.client import AltmetricClient, FetchResult
from harvester.harvest.discovery import DiscoverReport, Discovery, new_job_state
from harvester.harvest.policy import RetryPolicy
from harvester.harvest.quota import QuotaState
from harvester.harvest.ratelimit import RateController
from harvester.harvest.ratestate import LEARNED_RATE_KEY, RatePolicy, saved_learned_rate
from harvester.harvest.reactions import Reactions, key_refusal
from harvester.logs import say
from harvester.model import ExitCode
from harvester.progress import ProgressLine, write_above
from harvester.scheduling import DISCOVER_PAGE_SIZE, DiscoverQuery
from harvester.store.aio import AsyncStore
from harvester.store.discovered import REJECTS_KEPT

REJECTS_SHOWN = REJECTS_KEPT  # those a resumed run shows again


def cmd_discover(invocation: Invocation, query: DiscoverQuery, *, restart: bool) -> ExitCode:
    """Run one discovery; exit 3 if the API rejects the key."""
    settings = invocation.settings()
    key = load_api_key(settings)
    progress = PagesShown()
    refused: list[FetchResult] = []  # the answer that refused the key, if one did
    real_path = settings.store.path.resolve()  # through a symlink, as enqueue's
    is_new = not real_path.exists()
    try:
        report = asyncio.run(_discover(settings, key, query, restart, progress, refused))
    finally:
        progress.close()
        if is_new and real_path.exists():
            settle_new_store(settings.store.path, real_path, used=_holds_jobs(settings))
    return _summary(report, refused)


def _holds_jobs(settings: Settings) -> bool:
    """Whether the store holds a job (one that cannot even be read is kept, as found)."""
    from harvester.store import Store

    try:
        with Store(settings.store.path, read_only=True) as store:
            return store.jobs.any()
    except (HarvesterError, sqlite3.Error):
        return True


async def _discover(
    settings: Settings,
    key: Secret,
    query: DiscoverQuery,
    restart: bool,
    progress: PagesShown,
    refused: list[FetchResult],
) -> DiscoverReport:
    store = await AsyncStore.open(settings.store.path, derive=settings.store.derive)
    rate = RateController(RatePolicy.of(settings.rate), learned=await saved_learned_rate(store))
    reactions = Reactions(rate, QuotaState(settings.quota), store, on_fatal=refused.append)
    try:
        async with AltmetricClient.for_api(settings.api, key) as client:
            discovery = Discovery(
                client,
                rate,
                reactions,
                store,
                new_job_state=new_job_state(settings.api.endpoint),
                retry=RetryPolicy.of(settings.workers),
                on_page=progress.show,
            )
            return await discovery.run(query, restart=restart)
    finally:  # what the refusals taught is kept however the discovery ended
        reactions.cancel()
        if (learned := rate.learned()) is not None:
            await store.save_states({LEARNED_RATE_KEY: learned.to_json()})
        store.shutdown()


class PagesShown:
    """The pages on a progress line (a terminal only), rejected results above it."""

    def __init__(self) -> None:
        self._line = ProgressLine("discover", None, unit="pages")
        self._rejects_shown = 0

    def show(self, report: DiscoverReport) -> None:
        if report.total is not None:
            self._line.total = max(1, -(-report.total // DISCOVER_PAGE_SIZE))
        self._line.update(report.pages, f"{report.stored:,} results, {report.queued:,} new")
        shown = report.rejects_shown[:REJECTS_SHOWN]  # a resumed run's earlier ones first
        for text in shown[self._rejects_shown :]:
            write_above(sys.stderr, f"rejected {text}\n")
        self._rejects_shown = max(self._rejects_shown, len(shown))

    def close(self) -> None:
        self._line.close()


def _summary(report: DiscoverReport, refused: list[FetchResult]) -> ExitCode:
    if report.ended_by == "key rejected":
        how = key_refusal(refused[0]) if refused else "refused"
        say(f"harvester discover: API key rejected ({how})", priority="error")
        return ExitCode.KEY_REJECTED
    if report.first_page > 1:  # stdout says what one clean run would
        print(
            f"harvester discover: resumed at page {report.first_page}; the counts include "
            "the pages stored before",
            file=sys.stderr,
        )
    if report.rejected > REJECTS_SHOWN:
        print(f"... and {report.rejected - REJECTS_SHOWN:,} more rejected", file=sys.stderr)
    total = "?" if report.total is None else f"{report.total:,}"
    again = f" ({report.requeued:,} queued again for a new fetch)" if report.requeued else ""
    print(
        f"discovered {report.stored:,} of {total} results on {counted(report.pages, 'page')}: "
        f"queued {report.queued:,} new outputs, {report.known:,} already in the store"
        f"{again}; rejected {report.rejected:,}"
    )
    return ExitCode.FAILURE if report.rejected else ExitCode.OK
