"""The simulator's counts call: the free summary of the output the fetch call details,
agreeing with it number for number, with no tweet IDs in it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from helpers import ODD_KEY, doi_with
from multidict import CIMultiDictProxy
from yarl import URL

from harvester.sim import counts, universe
from harvester.sim.server import INVALID_KEY_TEXT, Simulator, SimulatorSettings

CONTEXT_FIELDS = {"count", "mean", "rank", "pct", "higher_than"}
CONTEXTS = {"all": "all", "this_journal": "journal", "similar_age_3m": "similar_age_3m"}
CONTEXTS["similar_age_this_journal_3m"] = "similar_age_journal_3m"
# The counts answer's own names, spelled out here rather than read from the module under test.
CITED_BY = {
    "twitter": "cited_by_tweeters_count", "news": "cited_by_msm_count",
    "blogs": "cited_by_feeds_count", "facebook": "cited_by_fbwalls_count",
    "reddit": "cited_by_rdts_count", "video": "cited_by_videos_count",
    "policy": "cited_by_policies_count", "googleplus": "cited_by_gplus_count",
    "peer_reviews": "cited_by_peer_review_sites_count", "q&a": "cited_by_qna_count",
    "forum": "cited_by_forums_count", "pinterest": "cited_by_pinners_count",
    "weibo": "cited_by_weibo_count", "f1000": "cited_by_f1000_count",
    "linkedin": "cited_by_linkedin_count", "rh": "cited_by_rh_count",
}  # fmt: skip

Reply = tuple[int, bytes, CIMultiDictProxy[str]]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorSettings(key=ODD_KEY)) as simulator:
        yield simulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def call(session: aiohttp.ClientSession, base: str, path: str, **params: str) -> Reply:
    """GET a pre-encoded path under the API base with the key (a "key" param replaces it)."""
    url = URL(f"{base}{path}?{urlencode({'key': ODD_KEY, **params})}", encoded=True)
    async with session.get(url) as response:
        return response.status, await response.read(), response.headers


async def both(session: aiohttp.ClientSession, base: str, target: str) -> tuple[Any, Any]:
    """The counts and fetch answers for `type/identifier`, both 200, parsed."""
    counts_status, counts_body, _ = await call(session, base, f"/{target}")
    fetch_status, fetch_body, _ = await call(session, base, f"/fetch/{target}")
    assert (counts_status, fetch_status) == (200, 200), target
    return json.loads(counts_body), json.loads(fetch_body)


def known(id_type: str, candidates: list[str]) -> str:
    return next(c for c in candidates if universe.is_known(id_type, c))


def unix_s(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp).timestamp())


def assert_agrees(answer: dict[str, Any], fetched: dict[str, Any]) -> None:
    """Every number the two calls share is the same number."""
    section, citation = fetched["altmetric_score"], fetched["citation"]
    assert answer["altmetric_id"] == fetched["altmetric_id"]
    assert answer["score"] == fetched["score"] == section["score"]
    assert answer["history"] == section["score_history"]
    assert answer["readers"] == fetched["counts"]["readers"]
    assert answer["title"] == citation["title"]
    assert answer["pubdate"] == unix_s(citation["pubdate"])
    assert answer["added_on"] == unix_s(citation["first_seen_on"]) <= answer["last_updated"]
    sources = {s: c for s, c in fetched["counts"].items() if s not in ("readers", "total")}
    cited_by = {name: n for name, n in answer.items() if name.startswith("cited_by_")}
    assert cited_by == {
        **{CITED_BY[source]: part["unique_users_count"] for source, part in sources.items()},
        "cited_by_posts_count": fetched["counts"]["total"]["posts_count"],
        "cited_by_accounts_count": sum(part["unique_users_count"] for part in sources.values()),
    }
    for name, context in section.get("context_for_score", {}).items():
        assert answer["context"][CONTEXTS[name]] == {
            "count": context["total_number_of_other_articles"],
            "mean": context["mean"],
            "rank": context["rank"],
            "pct": context["this_scored_higher_than_pct"],
            "higher_than": context["this_scored_higher_than"],
        }
    assert ("context" in answer) == ("context_for_score" in section)
    assert answer.get("journal") == citation.get("journal")
    assert answer.get("issns") == citation.get("issns")
    assert answer["images"] == fetched["images"]
    assert answer["details_url"].endswith(f"citation_id={fetched['altmetric_id']}")


async def test_counts_agree_with_fetch(sim: Simulator, session: aiohttp.ClientSession):
    targets = [
        f"doi/10.5555/agree.{n}"
        for n in range(60)
        if universe.is_known("doi", f"10.5555/agree.{n}")
    ]
    heavy, _ = doi_with(lambda o: len(o["posts"].get("twitter", ())) > 1500, limit=2000)
    targets.append(f"doi/{heavy}")
    sparse = 0
    for target in targets:
        answer, fetched = await both(session, sim.base_url, target)
        assert_agrees(answer, fetched)
        assert answer["doi"] == target.removeprefix("doi/")
        sparse += "context" not in answer
    assert 0 < sparse < len(targets)  # sparse outputs have no context, as fetch has none


async def test_counts_carry_no_tweet_ids(sim: Simulator, session: aiohttp.ClientSession):
    doi, _ = doi_with(lambda o: len(o["posts"].get("twitter", ())) >= 30)
    answer, fetched = await both(session, sim.base_url, f"doi/{doi}")
    assert "posts" not in answer and "counts" not in answer
    body = json.dumps(answer)
    assert "tweet_id" not in body and "tweeter_id" not in body
    assert not any(tweet_id in body for tweet_id in universe.tweet_ids(fetched))
    assert answer["cited_by_tweeters_count"] < answer["cited_by_posts_count"]


async def test_counts_shape(sim: Simulator, session: aiohttp.ClientSession):
    doi, _ = doi_with(
        lambda o: {"news", "blogs", "twitter"} <= o["posts"].keys() and "demographics" in o
    )
    answer, _ = await both(session, sim.base_url, f"doi/{doi}")
    assert {
        "cited_by_msm_count",
        "cited_by_feeds_count",
        "cited_by_tweeters_count",
    } <= answer.keys()
    assert set(answer["history"]) == {
        "1d",
        "2d",
        "3d",
        "4d",
        "5d",
        "6d",
        "1w",
        "1m",
        "3m",
        "6m",
        "1y",
        "at",
    }
    assert set(answer["context"]) == set(CONTEXTS.values())
    assert all(set(context) == CONTEXT_FIELDS for context in answer["context"].values())
    assert set(answer["readers"]) == {"mendeley", "citeulike", "connotea"}
    assert answer["readers_count"] == sum(int(n) for n in answer["readers"].values())
    assert set(answer["cohorts"]) <= {"pub", "sci", "com", "doc"} and answer["cohorts"]
    assert answer["type"] == "article" and answer["issns"] and answer["subjects"]
    assert all(isinstance(answer[name], int) for name in ("pubdate", "added_on", "last_updated"))


async def test_a_string_reader_count_stays_a_string(sim: Simulator, session: aiohttp.ClientSession):
    doi, output = doi_with(lambda o: isinstance(o["counts"]["readers"]["mendeley"], str))
    answer, _ = await both(session, sim.base_url, f"doi/{doi}")
    mendeley = output["counts"]["readers"]["mendeley"]
    assert answer["readers"]["mendeley"] == mendeley
    assert answer["readers_count"] == int(mendeley) > 0


@pytest.mark.parametrize(
    ("id_type", "field", "candidates"),
    [
        ("pmid", "pmid", [str(31_000_000 + n) for n in range(50)]),
        ("arxiv", "arxiv_id", [f"2301.{n:05d}" for n in range(50)]),
        ("isbn", "isbns", [f"978000000{n:03d}9" for n in range(50)]),
        ("handle", "handles", [f"2027.9/x-{n}" for n in range(50)]),
    ],
)
async def test_other_identifier_kinds(
    sim: Simulator, session: aiohttp.ClientSession, id_type: str, field: str, candidates: list[str]
):
    identifier = known(id_type, candidates)
    answer, fetched = await both(session, sim.base_url, f"{id_type}/{identifier}")
    assert_agrees(answer, fetched)
    assert answer[field] == ([identifier] if field in ("isbns", "handles") else identifier)
    assert "doi" not in answer
    assert answer["type"] == ("book" if id_type == "isbn" else "article")


async def test_aliases_case_and_percent_decoding(sim: Simulator, session: aiohttp.ClientSession):
    identifier = known("arxiv", [f"2101.{n:05d}" for n in range(100)])
    legacy = await call(session, sim.base_url, f"/arxiv_id/{identifier}")
    today = await call(session, sim.base_url, f"/arxiv/{identifier}")
    assert legacy[:2] == today[:2] and today[0] == 200
    doi = known("doi", [f"10.1000/a#b?c%d e/{n}" for n in range(50)])
    status, body, _ = await call(session, sim.base_url, f"/doi/{quote(doi.upper(), safe='/')}")
    assert status == 200 and json.loads(body)["doi"] == doi.lower()
    record = sim.sent[-1]
    assert (record.endpoint, record.id_type, record.identifier) == ("counts", "doi", doi.upper())


async def test_fetch_filters_do_not_change_counts(sim: Simulator, session: aiohttp.ClientSession):
    doi, _ = doi_with(lambda o: len(o["posts"]) > 2)
    plain = await call(session, sim.base_url, f"/doi/{doi}")
    filtered = await call(
        session, sim.base_url, f"/doi/{doi}", include_sources="news", include_sections="posts"
    )
    assert plain[0] == 200 and plain[1] == filtered[1]


@pytest.mark.parametrize("params", [{"key": ""}, {"key": "wrong"}])
async def test_a_bad_key_is_403(
    sim: Simulator, session: aiohttp.ClientSession, params: dict[str, str]
):
    doi = known("doi", [f"10.5555/key.{n}" for n in range(50)])
    status, body, _ = await call(session, sim.base_url, f"/doi/{doi}", **params)
    assert (status, body.decode()) == (403, INVALID_KEY_TEXT)
    url = URL(f"{sim.base_url}/doi/{doi}", encoded=True)
    async with session.get(url) as response:  # no key at all
        assert (response.status, await response.text()) == (403, INVALID_KEY_TEXT)


async def test_unknown_is_404_and_malformed_is_400(sim: Simulator, session: aiohttp.ClientSession):
    unknown = next(
        d for d in (f"10.5555/gone.{n}" for n in range(500)) if not universe.is_known("doi", d)
    )
    assert (await call(session, sim.base_url, f"/doi/{unknown}"))[:2] == (404, b"Not Found")
    assert (await call(session, sim.base_url, "/id/not-a-number"))[:2] == (404, b"Not Found")
    assert (await call(session, sim.base_url, "/bogus/10.1/x"))[:2] == (
        400,
        b"Invalid identifier type",
    )
    assert (await call(session, sim.base_url, "/doi/"))[:2] == (400, b"Invalid identifier")
    assert (await call(session, sim.base_url, "/doi/10.1/%FF"))[:2] == (400, b"Invalid identifier")
    assert [record.endpoint for record in sim.sent] == ["counts"] * 5


async def test_calls_are_recorded_by_kind(sim: Simulator, session: aiohttp.ClientSession):
    doi = known("doi", [f"10.5555/kind.{n}" for n in range(50)])
    for path in (f"/doi/{doi}", f"/fetch/doi/{doi}", "/citations/1d", f"/doi/{doi}"):
        assert (await call(session, sim.base_url, path))[0] == 200
    assert [record.endpoint for record in sim.sent] == ["counts", "fetch", "citations", "counts"]
    assert (sim.sent[2].id_type, sim.sent[2].identifier) == ("", "1d")


async def test_a_body_pool_leaves_counts_rendered(session: aiohttp.ClientSession):
    doi = known("doi", [f"10.5555/pool.{n}" for n in range(50)])
    async with Simulator(SimulatorSettings(key=ODD_KEY, body_pool=2)) as pooled:
        status, body, _ = await call(session, pooled.base_url, f"/doi/{doi}")
    output = universe.output_for("doi", doi)
    assert output is not None and status == 200
    assert json.loads(body) == counts.counts_answer(output)


def test_counts_answer_copies_what_it_shares():
    doi, output = doi_with(lambda o: "demographics" in o)
    answer = counts.counts_answer(output)
    answer["history"]["at"] = -1
    answer["readers"]["mendeley"] = -1
    answer["issns"].append("0000-0000")
    again = universe.output_for("doi", doi)
    assert again is not None and counts.counts_answer(again) == counts.counts_answer(output)
    assert answer != counts.counts_answer(output)
