"""The bundled simulator: a real loopback server answering like the fetch API."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from aiohttp import web
from helpers import ODD_KEY, doi_with
from yarl import URL

from harvester.sim import universe
from harvester.sim.server import (
    INVALID_KEY_TEXT,
    FetchRequest,
    Simulator,
    SimulatorSettings,
    serve,
    text_response,
)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorSettings(key=ODD_KEY)) as simulator:
        yield simulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def get(
    session: aiohttp.ClientSession, base: str, path: str, **params: str
) -> tuple[int, bytes, str]:
    """GET a pre-encoded path under the API base; returns status, body and Content-Length."""
    query = urlencode({"key": ODD_KEY, **params})  # a "key" in params replaces the right one
    url = URL(f"{base}{path}?{query}", encoded=True)
    async with session.get(url) as response:
        return response.status, await response.read(), response.headers["Content-Length"]


def dois(count: int, *, known: bool = True) -> list[str]:
    """The first DOIs of a fixed series that are (or are not) in the universe."""
    found: list[str] = []
    index = 0
    while len(found) < count:
        doi = f"10.5555/sim.{index}"
        if universe.is_known("doi", doi) == known:
            found.append(doi)
        index += 1
    return found


async def test_same_identifier_gives_same_bytes(sim: Simulator, session: aiohttp.ClientSession):
    doi = dois(1)[0]
    first = await get(session, sim.base_url, f"/fetch/doi/{doi}")
    universe._build.cache_clear()  # the second answer must be rebuilt, not remembered
    second = await get(session, sim.base_url, f"/fetch/doi/{doi}")
    assert first[0] == second[0] == 200
    assert first[1] == second[1]
    assert json.loads(first[1])["citation"]["doi"] == doi


@pytest.mark.parametrize(("legacy", "today"), [("arxiv_id", "arxiv"), ("ads_id", "ads")])
async def test_legacy_type_names_give_the_same_body(
    sim: Simulator, session: aiohttp.ClientSession, legacy: str, today: str
):
    identifier = next(
        i for i in (f"2101.{n:05d}" for n in range(100)) if universe.is_known(today, i)
    )
    status_old, body_old, _ = await get(session, sim.base_url, f"/fetch/{legacy}/{identifier}")
    status_new, body_new, _ = await get(session, sim.base_url, f"/fetch/{today}/{identifier}")
    assert status_old == status_new == 200
    assert body_old == body_new
    field = universe.CITATION_KEYS[today]
    assert json.loads(body_new)["citation"][field] == identifier


async def test_doi_case_does_not_matter(sim: Simulator, session: aiohttp.ClientSession):
    doi = dois(1)[0]
    lower = await get(session, sim.base_url, f"/fetch/doi/{doi}")
    upper = await get(session, sim.base_url, f"/fetch/doi/{doi.upper()}")
    assert lower == upper


@pytest.mark.parametrize("params", [{}, {"key": "wrong"}, {"key": ODD_KEY.replace("+", " ")}])
async def test_missing_or_wrong_key_is_403(
    sim: Simulator, session: aiohttp.ClientSession, params: dict[str, str]
):
    path = f"/fetch/doi/{dois(1)[0]}"
    url = URL(f"{sim.base_url}{path}", encoded=True)
    async with session.get(url, params=params) as response:
        assert response.status == 403
        assert await response.text() == INVALID_KEY_TEXT
    async with session.get(url, params={"key": ODD_KEY}) as response:
        assert response.status == 200  # the same request with the right key passes


async def test_unknown_identifier_is_404(sim: Simulator, session: aiohttp.ClientSession):
    doi = dois(1, known=False)[0]
    status, body, _ = await get(session, sim.base_url, f"/fetch/doi/{doi}")
    assert (status, body) == (404, b"Not Found")
    assert universe.output_for("doi", doi) is None


async def test_fetch_by_altmetric_id_needs_a_number(sim: Simulator, session: aiohttp.ClientSession):
    number = next(str(n) for n in range(1000, 2000) if universe.is_known("id", str(n)))
    status, body, _ = await get(session, sim.base_url, f"/fetch/id/{number}")
    assert status == 200 and json.loads(body)["altmetric_id"] == int(number)
    status, body, _ = await get(session, sim.base_url, "/fetch/id/not-a-number")
    assert (status, body) == (404, b"Not Found")


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/fetch/bogus/10.1/x", b"Invalid identifier type"),
        ("/fetch/doi/", b"Invalid identifier"),
        ("/fetch/doi/10.1/%FF%FE", b"Invalid identifier"),  # not UTF-8
    ],
)
async def test_malformed_requests_are_400(
    sim: Simulator, session: aiohttp.ClientSession, path: str, text: bytes
):
    assert await get(session, sim.base_url, path) == (400, text, str(len(text)))
    assert sim.sent[-1].status == 400


async def test_exclude_twitter_removes_posts_and_counts(
    sim: Simulator, session: aiohttp.ClientSession
):
    doi, _ = doi_with(lambda o: "twitter" in o["posts"] and len(o["posts"]) > 1)
    _, body, _ = await get(session, sim.base_url, f"/fetch/doi/{doi}", exclude_sources="twitter")
    parsed = json.loads(body)
    assert "twitter" not in parsed["posts"] and "twitter" not in parsed["counts"]
    assert parsed["posts"] and {"readers", "total"} <= parsed["counts"].keys()
    assert universe.tweet_ids(parsed) == []


async def test_gplus_filter_name_maps_to_googleplus(sim: Simulator, session: aiohttp.ClientSession):
    doi, _ = doi_with(lambda o: "googleplus" in o["posts"] and len(o["posts"]) > 1)
    _, body, _ = await get(session, sim.base_url, f"/fetch/doi/{doi}", include_sources="gplus")
    parsed = json.loads(body)
    assert set(parsed["posts"]) == {"googleplus"}
    assert set(parsed["counts"]) == {"readers", "googleplus", "total"}


async def test_include_sections_keeps_only_those(sim: Simulator, session: aiohttp.ClientSession):
    doi = dois(1)[0]
    sections = "citation,altmetric_score"
    _, body, _ = await get(session, sim.base_url, f"/fetch/doi/{doi}", include_sections=sections)
    assert set(json.loads(body)) == {"altmetric_id", "citation", "altmetric_score", "score"}


async def test_original_tweets_drop_retweets_but_not_counts(
    sim: Simulator, session: aiohttp.ClientSession
):
    doi, _ = doi_with(lambda o: len(o["posts"].get("twitter", ())) >= 30)
    _, full, _ = await get(session, sim.base_url, f"/fetch/doi/{doi}")
    _, originals, _ = await get(
        session, sim.base_url, f"/fetch/doi/{doi}", post_types="original_tweets"
    )
    full_body, original_body = json.loads(full), json.loads(originals)
    kept = universe.tweet_ids(original_body)
    assert 0 < len(kept) < len(universe.tweet_ids(full_body))
    assert set(kept) <= set(universe.tweet_ids(full_body))
    assert not any(universe.is_retweet(tweet) for tweet in original_body["posts"]["twitter"])
    assert original_body["counts"] == full_body["counts"]


@pytest.mark.parametrize(
    "stem",
    [
        "10.1000/a#b?c%d e<>ü東京",  # would cut the URL short, or corrupt it, if sent raw
        "10.1000/x%41y%2Fz",  # decoded twice it would turn into "xAy/z"
        "10.1000/a//b/../c/./d",  # a normalising server would shorten the path
    ],
)
async def test_percent_encoded_doi_arrives_decoded(
    sim: Simulator, session: aiohttp.ClientSession, stem: str
):
    doi = next(d for d in (f"{stem}/{n}" for n in range(50)) if universe.is_known("doi", d))
    path = f"/fetch/doi/{quote(doi, safe='/')}"
    assert "#" not in path and "?" not in path and " " not in path
    status, body, _ = await get(session, sim.base_url, path)
    assert status == 200
    record = sim.sent[-1]
    assert (record.id_type, record.identifier, record.query) == ("doi", doi, {})
    assert json.loads(body)["citation"]["doi"] == doi.lower()


async def test_records_hash_the_exact_bytes_sent(sim: Simulator, session: aiohttp.ClientSession):
    answers = [
        await get(session, sim.base_url, f"/fetch/doi/{dois(1)[0]}", include_sources="news"),
        await get(session, sim.base_url, f"/fetch/doi/{dois(1, known=False)[0]}"),
        await get(session, sim.base_url, f"/fetch/doi/{dois(1)[0]}", key="wrong"),
    ]
    assert [status for status, _, _ in answers] == [200, 404, 403]
    assert len(sim.sent) == sim.requests_total == 3
    for (_, body, length), record in zip(answers, sim.sent, strict=True):
        assert record.sha256 == hashlib.sha256(body).hexdigest()
        assert record.size == len(body) == int(length)
    assert sim.sent[0].query == {"include_sources": "news"}  # the key is never recorded


async def test_records_can_be_switched_off(session: aiohttp.ClientSession):
    async with Simulator(SimulatorSettings(key=ODD_KEY, record_sent=False)) as quiet:
        status, _, _ = await get(session, quiet.base_url, f"/fetch/doi/{dois(1)[0]}")
        assert status == 200
        assert quiet.sent == [] and quiet.requests_total == 1


async def test_an_appended_gate_can_answer_429(sim: Simulator, session: aiohttp.ClientSession):
    async def busy(request: web.Request, fetch: FetchRequest) -> web.StreamResponse | None:
        return text_response(429, "Too many requests") if "busy" in fetch.identifier else None

    sim.gates.append(busy)
    assert await get(session, sim.base_url, "/fetch/doi/10.1/busy") == (
        429,
        b"Too many requests",
        "17",
    )
    assert sim.sent[-1].status == 429
    assert (await get(session, sim.base_url, "/fetch/doi/10.1/busy", key="no"))[0] == 403
    assert (await get(session, sim.base_url, f"/fetch/doi/{dois(1)[0]}"))[0] == 200


async def test_latency_delays_every_answer(session: aiohttp.ClientSession):
    async with Simulator(SimulatorSettings(key=ODD_KEY, latency_s=0.2)) as slow:
        for params in ({}, {"key": "wrong"}):
            started = time.perf_counter()
            await get(session, slow.base_url, f"/fetch/doi/{dois(1)[0]}", **params)
            assert time.perf_counter() - started >= 0.2 - 1e-3


async def test_serve_announces_its_port(capsys: pytest.CaptureFixture[str]):
    task = asyncio.create_task(serve(SimulatorSettings(key="demo"), "127.0.0.1", 0))
    said = ""
    for _ in range(200):
        if said := capsys.readouterr().out:
            break
        await asyncio.sleep(0.01)
    line, _, rest = said.partition("\n")
    match = re.fullmatch(r"simulator listening on (http://127\.0\.0\.1:\d+/v1) \(key: demo\)", line)
    assert match, said
    # Then the lines that point a harvester at it, as they are to be written (issue 24).
    assert f'[api]\nbase_url = "{match[1]}"\n' in rest
    assert "export ALTMETRIC_API_KEY=demo\n" in rest
    async with aiohttp.ClientSession() as client:
        url = URL(f"{match[1]}/fetch/doi/{dois(1)[0]}?key=demo", encoded=True)
        async with client.get(url) as response:
            assert response.status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_refuses_to_listen_beyond_loopback():
    simulator = Simulator(SimulatorSettings(key=ODD_KEY))
    with pytest.raises(ValueError, match="loopback"):
        await simulator.start(host="0.0.0.0")  # noqa: S104 (refused before binding)
    with pytest.raises(RuntimeError):
        _ = simulator.base_url


async def fetch_headers(
    session: aiohttp.ClientSession, base: str, doi: str
) -> tuple[int, dict[str, str]]:
    url = URL(f"{base}/fetch/doi/{doi}?{urlencode({'key': ODD_KEY})}", encoded=True)
    async with session.get(url) as response:
        await response.read()
        return response.status, dict(response.headers)


async def test_an_hourly_allowance_counts_down_then_refuses_until_the_hour_ends(
    session: aiohttp.ClientSession,
) -> None:
    settings = SimulatorSettings(
        key=ODD_KEY, hourly_limit=100, hourly_used=97, send_retry_after=True
    )
    async with Simulator(settings) as simulator:
        seen = [await fetch_headers(session, simulator.base_url, doi) for doi in dois(4)]
    assert [status for status, _ in seen] == [200, 200, 200, 429]
    assert [headers["X-HourlyRateLimit-Remaining"] for _, headers in seen] == ["2", "1", "0", "0"]
    assert {headers["X-HourlyRateLimit-Limit"] for _, headers in seen} == {"100"}
    left_s = 3600 - time.time() % 3600
    assert abs(int(seen[-1][1]["Retry-After"]) - left_s) <= 2  # to the UTC hour's end
    assert "X-DailyRateLimit-Limit" not in seen[0][1]


async def test_a_daily_allowance_sends_its_own_headers(session: aiohttp.ClientSession) -> None:
    settings = SimulatorSettings(key=ODD_KEY, daily_limit=10, daily_used=9)
    async with Simulator(settings) as simulator:
        first = await fetch_headers(session, simulator.base_url, dois(1)[0])
        second = await fetch_headers(session, simulator.base_url, dois(2)[1])
    assert first[0] == 200 and first[1]["X-DailyRateLimit-Remaining"] == "0"
    assert second[0] == 429 and "Retry-After" not in second[1]
    assert "X-HourlyRateLimit-Limit" not in first[1]  # no hourly allowance configured


async def test_a_bucket_refuses_its_burst_and_may_keep_its_headers_to_itself(
    session: aiohttp.ClientSession,
) -> None:
    settings = SimulatorSettings(
        key=ODD_KEY,
        rate_limit_per_s=2,
        rate_limit_burst=2,
        rate_limit_status=420,
        send_retry_after=True,
        bucket_headers=False,
    )
    async with Simulator(settings) as simulator:
        seen = [await fetch_headers(session, simulator.base_url, doi) for doi in dois(3)]
    assert [status for status, _ in seen] == [200, 200, 420]
    assert seen[2][1]["Retry-After"] == "1"  # whole seconds until the next token
    assert not any(name.startswith("X-Hourly") for _, headers in seen for name in headers)
