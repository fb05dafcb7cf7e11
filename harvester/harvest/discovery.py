"""Discovery: page the citations call and let every output it lists into the store.

`GET {base}/citations/{timeframe}?num_results=100&page=N` lists the outputs that got
attention in a timeframe. Each page goes through the harvest's own rate controller
and reactions (a refusal lowers the one rate everyone shares; a rejected key stops
it), and its results are stored as counts snapshots, each output queued once
(`store.discovered`). The page and the position after it are one transaction, with
the discovery's totals so far: a discovery killed at any moment, run again with the
same query, resumes at the next page and ends with the counts of one clean run. It
ends at the last page (`query.total`), at `max_pages`, or at an error past the end
(the API answers asking beyond the last page with one).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from harvester.errors import DiscoverError
from harvester.harvest.client import AltmetricClient, FetchResult
from harvester.harvest.policy import RetryPolicy, noting_redaction
from harvester.harvest.ratelimit import RateController
from harvester.harvest.reactions import Reactions
from harvester.logs import get_logger
from harvester.model import Endpoint, JobState, Outcome, iso_utc
from harvester.scheduling import DISCOVER_PAGE_SIZE, DiscoverQuery
from harvester.store.aio import AsyncStore
from harvester.store.discovered import (
    POSITION_PREFIX,
    DiscoveredPage,
    DiscoverTotals,
    PageCounts,
)
from harvester.store.loose import count

RESUME_WITHIN_S = 6 * 3600.0  # an older position is of a listing that has moved on
log = get_logger("harvester.harvest.discovery")


@dataclass
class DiscoverReport:
    """What one discovery did, counted from its first page even when this run resumed
    it (`totals`, saved with each page's position); `on_page` sees it grow."""

    timeframe: str
    first_page: int = 1  # > 1 when it resumed an earlier discovery
    total: int | None = None  # results the API says the listing holds
    totals: DiscoverTotals = field(default_factory=DiscoverTotals)
    ended_by: str = ""  # "last page", "max pages", "past the end", "stopping", "key rejected"

    @property
    def finished(self) -> bool:
        return self.ended_by in ("last page", "max pages", "past the end")

    @property
    def pages(self) -> int:
        return self.totals.pages

    @property
    def stored(self) -> int:
        return self.totals.stored

    @property
    def queued(self) -> int:
        return self.totals.queued

    @property
    def known(self) -> int:
        return self.totals.known

    @property
    def requeued(self) -> int:  # known outputs queued again for a new fetch
        return self.totals.requeued

    @property
    def rejected(self) -> int:
        return self.totals.rejected

    @property
    def rejects_shown(self) -> tuple[str, ...]:  # the first few rejected results' messages
        return self.totals.shown

    def add(self, counts: PageCounts, total: int | None) -> None:
        self.total = total
        self.totals = self.totals.adding(counts)


def new_job_state(endpoint: str) -> str:
    """A newly discovered output is queued (`pending`) for the fetch call's mentions;
    with the counts call, its discovery snapshot is already the answer (`done`)."""
    return JobState.DONE if endpoint == Endpoint.COUNTS else JobState.PENDING


class _Page(msgspec.Struct):
    query: dict[str, Any] = {}
    results: list[msgspec.Raw] = []


_PAGE = msgspec.json.Decoder(_Page)


class Discovery:
    """Runs discoveries with the harvest's client, rate controller and store."""

    def __init__(
        self,
        client: AltmetricClient,
        rate: RateController,
        reactions: Reactions,
        store: AsyncStore,
        *,
        new_job_state: str,
        retry: RetryPolicy,
        on_page: Callable[[DiscoverReport], None] | None = None,
    ) -> None:
        self._client = client
        self._rate = rate
        self._reactions = reactions
        self._db = store
        self._new_job_state = new_job_state
        self._retry = retry
        self._on_page = on_page or (lambda report: None)
        self._failures = 0  # in a row, since the last page stored

    async def run(
        self, query: DiscoverQuery, *, restart: bool = False, stopping: asyncio.Event | None = None
    ) -> DiscoverReport:
        """Page through the listing (from where an earlier run of the same query
        stopped, unless `restart`) until it ends or `stopping` is set."""
        stopping = stopping or asyncio.Event()
        page, totals = (1, DiscoverTotals()) if restart else await self._resumed(query)
        report = DiscoverReport(query.timeframe, first_page=page, totals=totals)
        self._failures = 0
        while not report.ended_by:
            if stopping.is_set():
                report.ended_by = "stopping"
            elif query.max_pages and page > query.max_pages:
                await self._db.forget_state(position_key(query))
                report.ended_by = "max pages"
            elif await self._page(query, page, report):
                page += 1
        log.info(
            "discover.done",
            timeframe=query.timeframe,
            ended_by=report.ended_by,
            pages=report.pages,
            total=report.total,
            stored=report.stored,
            queued=report.queued,
        )
        return report

    async def _page(self, query: DiscoverQuery, page: int, report: DiscoverReport) -> bool:
        """Ask for one page and act on the answer: whether it was stored (else the
        same page is asked again, or the discovery ended: `report.ended_by`)."""
        ticket = await self._rate.acquire()
        result = await self._client.citations(query.timeframe, query.params(page))
        self._reactions.react(None, result, ticket)
        outcome = result.outcome
        if outcome is Outcome.OK and (parsed := _read_page(result.body)) is not None:
            self._failures = 0
            await self._store(query, page, parsed, report, redacted=result.redacted)
            return True
        if outcome is Outcome.UNAUTHORIZED:
            report.ended_by = "key rejected"
        elif outcome is Outcome.SETUP_ERROR:  # no page can come until a setting changes
            raise DiscoverError(result.error or str(outcome))
        elif outcome in (Outcome.NOT_FOUND, Outcome.INVALID_REQUEST):
            await self._refused(query, page, result, report)
        elif outcome is not Outcome.RATE_LIMITED:  # a refusal paused everyone: ask again
            await self._failed(page, result)
        return False

    async def _store(
        self,
        query: DiscoverQuery,
        page: int,
        parsed: tuple[int | None, list[bytes]],
        report: DiscoverReport,
        *,
        redacted: int = 0,
    ) -> None:
        """The page's results and the position after it, in one transaction. A page
        the key was taken out of says so in each result's `request_params`."""
        total, results = parsed
        last = not results or total is None or page * DISCOVER_PAGE_SIZE >= total
        at_max = bool(query.max_pages) and page >= query.max_pages
        position = None
        if not (last or at_max):
            saved = {
                "query": query.identity(),
                "next_page": page + 1,
                "saved_at_s": time.time(),
                "totals": report.totals.to_json(),  # the store adds this page's
            }
            position = json.dumps(saved)
        params = {"timeframe": query.timeframe, **query.params(page)}
        counts = await self._db.record_discovered(
            DiscoveredPage(
                results,
                iso_utc(time.time()),
                noting_redaction(json.dumps(params, sort_keys=True), redacted),
                self._new_job_state,
                position_key(query),
                position,
            )
        )
        report.add(counts, total)
        if last or at_max:
            report.ended_by = "last page" if last else "max pages"
        self._on_page(report)

    async def _refused(
        self, query: DiscoverQuery, page: int, result: FetchResult, report: DiscoverReport
    ) -> None:
        """A 404 or 400: past the last page (or nothing listed) ends the discovery; a
        first page refused is a query the API will not answer."""
        if page == 1 and result.outcome is Outcome.INVALID_REQUEST:
            raise DiscoverError(f"the API refused the discovery query: {result.error}")
        await self._db.forget_state(position_key(query))
        report.ended_by = "past the end"

    async def _failed(self, page: int, result: FetchResult) -> None:
        """A server or network failure: the page again after a backoff, until the
        attempts are spent (the position stays saved: running again resumes here)."""
        self._failures += 1
        error = result.error or result.outcome.value
        if self._failures >= self._retry.max_attempts:
            raise DiscoverError(
                f"page {page} failed {self._failures} times ({error}); run the same "
                "discovery again to resume at this page"
            )
        log.info("discover.page_failed", page=page, error=error, attempt=self._failures)
        await asyncio.sleep(self._retry.backoff_s(self._failures))

    async def _resumed(self, query: DiscoverQuery) -> tuple[int, DiscoverTotals]:
        """The next page of an earlier discovery of the same query and its totals so
        far, if it stopped less than RESUME_WITHIN_S ago; else page 1 and nothing done
        (the listing has moved on since)."""
        key = position_key(query)
        saved = await self._db.load_state(key)
        try:
            position = json.loads(saved) if saved else {}
        except ValueError:
            position = {}
        fresh = (1, DiscoverTotals())
        if not isinstance(position, dict):
            return fresh
        next_page, saved_at_s = position.get("next_page"), position.get("saved_at_s")
        if position.get("query") != query.identity() or not isinstance(next_page, int):
            return fresh
        if not isinstance(saved_at_s, int | float) or time.time() - saved_at_s > RESUME_WITHIN_S:
            log.info("discover.position_dropped", timeframe=query.timeframe, page=next_page)
            await self._db.forget_state(key)
            return fresh
        log.info("discover.resumed", timeframe=query.timeframe, page=next_page)
        if next_page <= 1:
            return fresh
        return next_page, DiscoverTotals.from_json(position.get("totals"))


def position_key(query: DiscoverQuery) -> str:
    """The daemon_state key of a query's position: each query resumes its own, so the
    daemon's scheduled discovery and one run by hand never clear each other's."""
    identity = json.dumps(query.identity(), sort_keys=True)
    return POSITION_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:16]


def _read_page(body: bytes) -> tuple[int | None, list[bytes]] | None:
    """A page's `query.total` and each result's exact bytes; None if it is not a page."""
    try:
        page = _PAGE.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return count(page.query.get("total")), [bytes(raw) for raw in page.results]
