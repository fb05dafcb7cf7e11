"""The simulator's citations call: a fixed listing per timeframe, cut into pages,
filtered and ordered, each result answerable one by one by the counts and fetch calls."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from helpers import ODD_KEY
from yarl import URL

from harvester.commands.simulate import cmd_simulate
from harvester.errors import CommandError
from harvester.identifiers import normalise
from harvester.sim import universe
from harvester.sim.server import INVALID_KEY_TEXT, Simulator, SimulatorSettings

SIZE = 60  # outputs per timeframe in most tests: three pages of 25, the last one short
TIMEFRAMES = ("at", "1d", "2d", "3d", "4d", "5d", "6d", "1w", "1m", "3m", "6m", "1y")


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    settings = SimulatorSettings(key=ODD_KEY, citations_per_timeframe=SIZE)
    async with Simulator(settings) as simulator:
        yield simulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def call(
    session: aiohttp.ClientSession, base: str, path: str, **params: str
) -> tuple[int, bytes]:
    """GET a path under the API base with the key (a "key" param replaces it)."""
    url = URL(f"{base}{path}?{urlencode({'key': ODD_KEY, **params})}", encoded=True)
    async with session.get(url) as response:
        return response.status, await response.read()


async def page(
    session: aiohttp.ClientSession, base: str, timeframe: str = "1w", **params: str
) -> dict[str, Any]:
    status, body = await call(session, base, f"/citations/{timeframe}", **params)
    assert status == 200, body
    parsed: dict[str, Any] = json.loads(body)
    return parsed


async def everything(
    session: aiohttp.ClientSession, base: str, timeframe: str = "1w", **params: str
) -> list[dict[str, Any]]:
    """Every result, page after page of 100, while `page * num_results < total`."""
    results: list[dict[str, Any]] = []
    number = 1
    while True:
        answer = await page(session, base, timeframe, num_results="100", page=str(number), **params)
        results.extend(answer["results"])
        if number * 100 >= answer["query"]["total"]:
            return results
        number += 1


def best_identifier(result: dict[str, Any]) -> str:
    """`type/identifier` for a result, the way a client picks: DOI first."""
    for field, id_type in (("doi", "doi"), ("pmid", "pmid"), ("arxiv_id", "arxiv")):
        if field in result:
            return f"{id_type}/{result[field]}"
    if "isbns" in result:
        return f"isbn/{result['isbns'][0]}"
    return f"handle/{result['handles'][0]}"


async def test_pages_cover_the_listing_once(sim: Simulator, session: aiohttp.ClientSession):
    pages = [await page(session, sim.base_url, page=str(n)) for n in (1, 2, 3)]
    assert [len(p["results"]) for p in pages] == [25, 25, 10]
    assert [p["query"] for p in pages] == [
        {"total": SIZE, "page": n, "num_results": 25, "timeframe": "1w", "order_by": "score"}
        for n in (1, 2, 3)
    ]
    ids = [result["altmetric_id"] for p in pages for result in p["results"]]
    assert len(ids) == len(set(ids)) == SIZE
    whole = await everything(session, sim.base_url)
    assert [result["altmetric_id"] for result in whole] == ids  # one order, whatever the size
    assert await call(session, sim.base_url, "/citations/1w", page="4") == (404, b"Not Found")
    assert (await call(session, sim.base_url, "/citations/1w", page="3", num_results="30"))[
        0
    ] == 404


async def test_the_default_listing_has_250_outputs(session: aiohttp.ClientSession):
    async with Simulator(SimulatorSettings(key=ODD_KEY)) as default:
        assert SimulatorSettings(key="k").citations_per_timeframe == 250
        pages = [
            await page(session, default.base_url, "1d", num_results="100", page=str(n))
            for n in (1, 2, 3)
        ]
        past_end = await call(
            session, default.base_url, "/citations/1d", num_results="100", page="4"
        )
    assert [len(p["results"]) for p in pages] == [100, 100, 50]
    assert {p["query"]["total"] for p in pages} == {250}
    assert len({r["altmetric_id"] for p in pages for r in p["results"]}) == 250
    assert past_end == (404, b"Not Found")


async def test_every_result_is_answered_alike_by_counts_and_fetch(
    sim: Simulator, session: aiohttp.ClientSession
):
    results = await everything(session, sim.base_url, "1d")
    kinds = {best_identifier(result).partition("/")[0] for result in results}
    assert kinds == {"doi", "pmid", "arxiv", "isbn", "handle"}
    for result in results:
        target = best_identifier(result)
        id_type, _, identifier = target.partition("/")
        assert normalise(id_type, identifier).value == identifier  # a client can enqueue it
        status, body = await call(session, sim.base_url, f"/{target}")
        assert status == 200 and json.loads(body) == result
        status, body = await call(session, sim.base_url, f"/fetch/{target}")
        assert status == 200 and json.loads(body)["altmetric_id"] == result["altmetric_id"]
    assert [record.endpoint for record in sim.sent].count("counts") == len(results)


async def test_timeframes_list_their_own_outputs(sim: Simulator, session: aiohttp.ClientSession):
    seen: dict[str, set[int]] = {}
    for timeframe in TIMEFRAMES:
        results = await everything(session, sim.base_url, timeframe)
        seen[timeframe] = {result["altmetric_id"] for result in results}
        assert len(seen[timeframe]) == SIZE
    assert len(set().union(*seen.values())) == SIZE * len(TIMEFRAMES)
    again = await call(session, sim.base_url, "/citations/3m", page="2")
    universe._build.cache_clear()
    assert again == await call(session, sim.base_url, "/citations/3m", page="2")


async def test_doi_prefix_keeps_one_registrant(sim: Simulator, session: aiohttp.ClientSession):
    whole = await everything(session, sim.base_url)
    registrants = {result["doi"].partition("/")[0] for result in whole if "doi" in result}
    assert registrants == {"10.1101", "10.9999"}
    for prefix in ("10.1101", "10.9999/"):
        kept = await everything(session, sim.base_url, doi_prefix=prefix)
        expected = [r for r in whole if r.get("doi", "").startswith(prefix.rstrip("/") + "/")]
        assert kept == expected
        assert 0 < len(kept) < len(whole)
    nothing = await page(session, sim.base_url, doi_prefix="10.1")  # a registrant, not a string
    assert nothing["query"]["total"] == 0 and nothing["results"] == []
    assert nothing["query"]["doi_prefix"] == "10.1"
    assert (await page(session, sim.base_url, doi_prefix="10.1", page="2"))["results"] == []


@pytest.mark.parametrize(
    ("cited_in", "field"),
    [
        ("twitter", "cited_by_tweeters_count"),
        ("news", "cited_by_msm_count"),
        ("blogs", "cited_by_feeds_count"),
        ("gplus", "cited_by_gplus_count"),
        ("peerreview", "cited_by_peer_review_sites_count"),
    ],
)
async def test_cited_in_keeps_outputs_with_posts_there(
    sim: Simulator, session: aiohttp.ClientSession, cited_in: str, field: str
):
    whole = await everything(session, sim.base_url, "1m")
    kept = await everything(session, sim.base_url, "1m", cited_in=cited_in)
    assert kept == [result for result in whole if result.get(field, 0) > 0]
    assert 0 < len(kept) < len(whole)
    assert (await page(session, sim.base_url, "1m", cited_in=cited_in))["query"][
        "cited_in"
    ] == cited_in


async def test_cited_in_a_source_nobody_posted_in(sim: Simulator, session: aiohttp.ClientSession):
    answer = await page(session, sim.base_url, cited_in="bluesky")
    assert answer["query"]["total"] == 0 and answer["results"] == []


async def test_issns_keep_outputs_of_those_journals(sim: Simulator, session: aiohttp.ClientSession):
    whole = await everything(session, sim.base_url, "6m")
    wanted = {"0028-0836", "2050-084X"}  # Nature (print) and eLife
    kept = await everything(session, sim.base_url, "6m", issns="0028-0836, 2050-084x")
    assert kept == [result for result in whole if wanted & set(result.get("issns", ()))]
    assert {result["journal"] for result in kept} == {"Nature", "eLife"}
    assert (await page(session, sim.base_url, "6m", issns="0028-0836"))["query"]["issns"] == [
        "0028-0836"
    ]


ORDER_KEYS = {
    "at_score": lambda result: result["score"],
    "readers": lambda result: result["readers_count"],
    "first_seen": lambda result: result["added_on"],
    "pubdate": lambda result: result["pubdate"],
}


@pytest.mark.parametrize("order_by", ["score", *ORDER_KEYS])
async def test_order_by_sorts_highest_first(
    sim: Simulator, session: aiohttp.ClientSession, order_by: str
):
    results = await everything(session, sim.base_url, "1d", order_by=order_by)
    key = ORDER_KEYS.get(order_by, lambda result: result["history"]["1d"])
    values = [key(result) for result in results]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]
    others = {
        name: await everything(session, sim.base_url, "1d", order_by=name) for name in ORDER_KEYS
    }
    assert all(results != other for name, other in others.items() if name != order_by)


async def test_score_is_the_default_order(sim: Simulator, session: aiohttp.ClientSession):
    default = await page(session, sim.base_url, "2d")
    assert default == await page(session, sim.base_url, "2d", order_by="score")
    assert default != await page(session, sim.base_url, "2d", order_by="at_score")


@pytest.mark.parametrize(
    ("path", "params", "text"),
    [
        ("/citations/2w", {}, b"Invalid timeframe"),
        ("/citations/", {}, b"Invalid timeframe"),
        ("/citations/1d/x", {}, b"Invalid timeframe"),
        ("/citations/1d", {"num_results": "0"}, b"Invalid num_results"),
        ("/citations/1d", {"num_results": "101"}, b"Invalid num_results"),
        ("/citations/1d", {"num_results": "ten"}, b"Invalid num_results"),
        ("/citations/1d", {"num_results": "-5"}, b"Invalid num_results"),
        ("/citations/1d", {"page": "0"}, b"Invalid page"),
        ("/citations/1d", {"page": ""}, b"Invalid page"),
        ("/citations/1d", {"order_by": "title"}, b"Invalid order_by"),
        ("/citations/1d", {"cited_in": "myspace"}, b"Invalid cited_in"),
    ],
)
async def test_bad_parameters_are_400(
    sim: Simulator, session: aiohttp.ClientSession, path: str, params: dict[str, str], text: bytes
):
    assert await call(session, sim.base_url, path, **params) == (400, text)
    assert sim.sent[-1].endpoint == "citations" and sim.sent[-1].status == 400


async def test_one_hundred_results_is_the_most(sim: Simulator, session: aiohttp.ClientSession):
    answer = await page(session, sim.base_url, num_results="100")
    assert len(answer["results"]) == SIZE and answer["query"]["num_results"] == 100


async def test_a_bad_key_is_403(sim: Simulator, session: aiohttp.ClientSession):
    assert await call(session, sim.base_url, "/citations/1d", key="wrong") == (
        403,
        INVALID_KEY_TEXT.encode(),
    )


async def test_an_empty_listing_answers_page_one(session: aiohttp.ClientSession):
    async with Simulator(SimulatorSettings(key=ODD_KEY, citations_per_timeframe=0)) as empty:
        answer = await page(session, empty.base_url, "at")
    assert answer == {
        "query": {"total": 0, "page": 1, "num_results": 25, "timeframe": "at", "order_by": "score"},
        "results": [],
    }


@pytest.mark.parametrize("size", [-1, 20_001])
def test_a_listing_size_out_of_range_is_refused(size: int):
    with pytest.raises(ValueError, match="citations_per_timeframe"):
        SimulatorSettings(key="k", citations_per_timeframe=size)


def test_simulate_refuses_a_listing_size_out_of_range():
    with pytest.raises(CommandError, match="--citations-per-timeframe"):
        cmd_simulate(
            "127.0.0.1", 0, key="k", latency_ms=0, body_pool=0, rate_limit=None,
            rate_limit_burst=1, rate_limit_status=429, retry_after=False, fault_rate=0,
            citations_per_timeframe=20_001,
        )  # fmt: skip
