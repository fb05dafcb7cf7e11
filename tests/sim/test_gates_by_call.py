"""The simulator's gates on its three calls: rate limits, allowances and faults refuse
fetch, counts and citations calls alike; the tweet-ID quota charges and refuses fetch only."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import aiohttp
import pytest
from helpers import ODD_KEY, doi_with
from multidict import CIMultiDictProxy
from yarl import URL

from harvester.sim import universe
from harvester.sim.gates import TWEET_QUOTA_TEXT
from harvester.sim.server import Simulator, SimulatorSettings

Reply = tuple[int, bytes, CIMultiDictProxy[str]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def call(session: aiohttp.ClientSession, base: str, path: str, **params: str) -> Reply:
    url = URL(f"{base}{path}?{urlencode({'key': ODD_KEY, **params})}", encoded=True)
    async with session.get(url) as response:
        return response.status, await response.read(), response.headers


def tweeted_doi(at_least: int) -> str:
    """A DOI whose fetch answer carries at least `at_least` tweet IDs."""
    doi, _ = doi_with(lambda o: len(o["posts"].get("twitter", ())) >= at_least)
    return doi


def paths(doi: str) -> dict[str, str]:
    return {"fetch": f"/fetch/doi/{doi}", "counts": f"/doi/{doi}", "citations": "/citations/1d"}


async def test_an_hourly_allowance_counts_every_call(session: aiohttp.ClientSession):
    settings = SimulatorSettings(key=ODD_KEY, hourly_limit=10, hourly_used=7)
    async with Simulator(settings) as sim:
        calls = paths(tweeted_doi(1))
        passed = [await call(session, sim.base_url, path) for path in calls.values()]
        refused = [await call(session, sim.base_url, path) for path in calls.values()]
    assert [status for status, _, _ in passed] == [200, 200, 200]
    remaining = [headers["X-HourlyRateLimit-Remaining"] for _, _, headers in passed]
    assert remaining == ["2", "1", "0"]
    assert [(status, body) for status, body, _ in refused] == [(429, b"Too many requests")] * 3
    assert [(r.endpoint, r.status) for r in sim.sent] == [
        *((name, 200) for name in calls),
        *((name, 429) for name in calls),
    ]


@pytest.mark.parametrize("endpoint", ["fetch", "counts", "citations"])
async def test_a_token_bucket_refuses_each_call(session: aiohttp.ClientSession, endpoint: str):
    settings = SimulatorSettings(key=ODD_KEY, rate_limit_per_s=0.01, rate_limit_burst=1)
    async with Simulator(settings) as sim:
        path = paths(tweeted_doi(1))[endpoint]
        first, second = [await call(session, sim.base_url, path) for _ in range(2)]
    assert (first[0], second[0]) == (200, 429)
    assert sim.rate_limit is not None and sim.rate_limit.refusals == 1


async def test_faults_hit_every_call(session: aiohttp.ClientSession):
    settings = SimulatorSettings(key=ODD_KEY, fault_rate=1.0, fault_kinds=("503",))
    async with Simulator(settings) as sim:
        statuses = [(await call(session, sim.base_url, p))[0] for p in paths("10.1/x").values()]
    assert statuses == [503, 503, 503]


async def test_the_tweet_quota_leaves_counts_and_citations_alone(session: aiohttp.ClientSession):
    doi = tweeted_doi(30)
    output = universe.output_for("doi", doi)
    assert output is not None
    tweets = len(universe.tweet_ids(output))
    settings = SimulatorSettings(key=ODD_KEY, tweet_quota=tweets + 5)
    async with Simulator(settings) as sim:
        calls = paths(doi)
        free = [await call(session, sim.base_url, calls[name]) for name in ("counts", "citations")]
        assert sim.tweet_quota is not None and sim.tweet_quota.used(time.monotonic()) == 0
        fetched = await call(session, sim.base_url, calls["fetch"])
        assert sim.tweet_quota.used(time.monotonic()) == tweets
        other, _ = doi_with(lambda o: len(o["posts"].get("twitter", ())) >= 10 and o != output)
        refused = await call(session, sim.base_url, paths(other)["fetch"])
        after = [await call(session, sim.base_url, calls[name]) for name in ("counts", "citations")]
    assert [status for status, _, _ in free + after] == [200, 200, 200, 200]
    assert not any("X-TweetIDRateLimit-Limit" in headers for _, _, headers in free + after)
    assert fetched[0] == 200 and fetched[2]["X-TweetIDRateLimit-Remaining"] == "5"
    assert (refused[0], refused[1].decode()) == (429, TWEET_QUOTA_TEXT)
    assert sim.tweet_quota.refusals == 1
