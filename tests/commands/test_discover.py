"""`harvester discover`: the citations call's listing into the store, each output once.

Each test runs the real CLI as a process against the simulator on loopback, and reads
the real SQLite file it leaves; a kill is a real SIGKILL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from helpers import KEY, harvester, harvester_async, queue, rows, start_harvester, write_config

from harvester.identifiers import Identifier
from harvester.sim.server import (
    FetchRequest,
    Gate,
    Simulator,
    SimulatorSettings,
    text_response,
)

ENV = {"ALTMETRIC_API_KEY": KEY}
POSITIONS = "SELECT count(*) FROM daemon_state WHERE key LIKE 'discover_position:%'"


def config(tmp_path: Path, base_url: str, **sections: dict[str, object]) -> Path:
    return write_config(
        tmp_path / "h.toml",
        base_url,
        rate={"requests_per_s": 50, "burst": 2},
        workers={"backoff_base_s": 0.05, "backoff_max_s": 0.1, "max_attempts": 3},
        **sections,
    )


async def discover(cfg: Path, db: Path, *args: str) -> tuple[int, str, str]:
    return await harvester_async(
        "--config", str(cfg), "--db", str(db), "discover", "--timeframe", "1w", *args, env=ENV
    )


def keep_pages(simulator: Simulator) -> list[dict[str, object]]:
    """A list that fills with every result of the citations pages the simulator
    answers (a gate sees only requests, so this wraps the recording of answers)."""
    results: list[dict[str, object]] = []
    original = simulator._record

    def record(fetch: FetchRequest, response: web.StreamResponse) -> web.StreamResponse:
        if fetch.endpoint == "citations" and response.status == 200:
            assert isinstance(response, web.Response) and isinstance(response.body, bytes)
            results.extend(json.loads(response.body)["results"])
        return original(fetch, response)

    simulator._record = record  # type: ignore[method-assign]
    return results


async def test_a_listing_is_stored_page_by_page_and_each_output_queued_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.db"
    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=250)) as sim:
        results = keep_pages(sim)
        cfg = config(tmp_path, sim.base_url)
        code, out, err = await discover(cfg, db)
        assert code == 0, err
        assert out.strip() == (
            "discovered 250 of 250 results on 3 pages: queued 250 new outputs, "
            "0 already in the store; rejected 0"
        )
        pages = [record.query for record in sim.sent if record.endpoint == "citations"]
        assert [(q["page"], q["num_results"]) for q in pages] == [
            ("1", "100"),
            ("2", "100"),
            ("3", "100"),
        ]
    assert len(results) == 250
    assert rows(db, "SELECT state, count(*) FROM jobs GROUP BY 1") == [("pending", 250)]
    assert rows(db, "SELECT endpoint, mode, count(*) FROM responses GROUP BY 1, 2") == [
        ("citations", "counts", 250)
    ]
    # Each result's exact bytes are stored: the page's slice re-serialised the same way.
    stored_ids = {row[0] for row in rows(db, "SELECT altmetric_id FROM outputs")}
    assert stored_ids == {result["altmetric_id"] for result in results}
    # The best identifier names the job: the DOI when there is one.
    with_doi = {str(r["doi"]).lower() for r in results if r.get("doi")}
    assert with_doi and with_doi <= {
        row[0] for row in rows(db, "SELECT identifier FROM jobs WHERE id_type = 'doi'")
    }
    assert rows(db, "SELECT count(*) FROM counts WHERE posts_count IS NULL")[0][0] > 0
    assert rows(db, "SELECT count(*) FROM daemon_state WHERE key LIKE 'discover_position:%'") == [
        (0,)
    ]


async def test_a_second_discovery_queues_only_what_is_new(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=120)) as sim:
        cfg = config(tmp_path, sim.base_url)
        code, out, err = await discover(cfg, db, "--max-pages", "1")
        assert code == 0, err
        assert "queued 100 new outputs" in out
        code, out, err = await discover(cfg, db)
        assert code == 0, err
    assert "queued 20 new outputs, 100 already in the store" in out
    assert rows(db, "SELECT count(*) FROM jobs") == [(120,)]
    assert rows(db, "SELECT count(*) FROM responses") == [(220,)]  # a snapshot each time


async def test_with_the_fetch_call_a_listed_output_already_fetched_is_fetched_again(
    tmp_path: Path,
) -> None:
    """Listed again means its attention changed: with the fetch call, its job goes back
    to the queue for the new mentions (no second job)."""
    db = tmp_path / "s.db"
    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=60)) as sim:
        cfg = config(tmp_path, sim.base_url)
        code, _, err = await discover(cfg, db)
        assert code == 0, err
        code, _, err = await harvester_async(
            "--config", str(cfg), "--db", str(db), "run", "--drain", env=ENV
        )
        assert code == 0, err
        assert rows(db, "SELECT state, count(*) FROM jobs GROUP BY 1") == [("done", 60)]
        code, out, err = await discover(cfg, db)
        assert code == 0, err
    assert "queued 0 new outputs, 60 already in the store (60 queued again for a new fetch)" in out
    assert rows(db, "SELECT state, attempts, count(*) FROM jobs GROUP BY 1, 2") == [
        ("pending", 0, 60)
    ]


async def test_an_output_queued_before_is_not_queued_again(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=100)) as sim:
        results = keep_pages(sim)
        cfg = config(tmp_path, sim.base_url)
        code, _, err = await discover(cfg, tmp_path / "probe.db")
        assert code == 0, err
        # Queued by its Altmetric ID; the listing names it by its DOI.
        by_id = next(r for r in results if r.get("doi"))
        queue(db, [Identifier("id", str(by_id["altmetric_id"]))])
        code, out, err = await discover(cfg, db)
        assert code == 0, err
    assert "queued 99 new outputs, 1 already in the store" in out
    assert rows(db, "SELECT count(*) FROM jobs") == [(100,)]
    job = rows(db, f"SELECT id FROM jobs WHERE identifier = '{by_id['altmetric_id']}'")[0][0]
    assert rows(db, f"SELECT count(*) FROM responses WHERE job_id = {job}") == [(1,)]


async def test_filters_and_order_reach_the_api(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=300)) as sim:
        results = keep_pages(sim)
        cfg = config(tmp_path, sim.base_url)
        code, _, err = await discover(
            cfg, db, "--doi-prefix", "10.1101", "--cited-in", "news", "--order-by", "readers"
        )
        assert code == 0, err
        [query, *_] = [r.query for r in sim.sent if r.endpoint == "citations"]
    assert query["doi_prefix"] == "10.1101"
    assert query["cited_in"] == "news"
    assert query["order_by"] == "readers"
    assert results and all(str(r["doi"]).startswith("10.1101/") for r in results)
    assert rows(db, "SELECT count(*) FROM outputs WHERE doi NOT LIKE '10.1101/%'") == [(0,)]
    assert rows(db, "SELECT count(*) FROM jobs") == [(len(results),)]


async def test_with_the_counts_call_a_discovered_output_is_already_done(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=50)) as sim:
        cfg = config(tmp_path, sim.base_url, api={"endpoint": "counts"})
        code, _, err = await discover(cfg, db)
        assert code == 0, err
    assert rows(db, "SELECT state, count(*) FROM jobs GROUP BY 1") == [("done", 50)]


async def test_an_error_past_the_last_page_ends_the_discovery(tmp_path: Path) -> None:
    """The listing shrank while it was paged: page 2 is past its end now."""
    db = tmp_path / "s.db"

    async def shrunk(request: web.Request, fetch: FetchRequest) -> web.Response | None:
        if fetch.endpoint == "citations" and fetch.query.get("page") != "1":
            return text_response(404, "Not Found")
        return None

    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=250)) as sim:
        sim.gates.append(shrunk)
        code, out, err = await discover(config(tmp_path, sim.base_url), db)
    assert code == 0, err
    assert out.startswith("discovered 100 of 250 results on 1 page:")
    assert rows(db, "SELECT count(*) FROM daemon_state WHERE key LIKE 'discover_position:%'") == [
        (0,)
    ]


async def test_a_page_that_keeps_failing_stops_it_and_a_rerun_resumes_there(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.db"
    failing = {"page": "2"}

    async def broken(request: web.Request, fetch: FetchRequest) -> web.Response | None:
        if fetch.endpoint == "citations" and fetch.query.get("page") == failing["page"]:
            return text_response(503, "Service Unavailable")
        return None

    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=250)) as sim:
        sim.gates.append(broken)
        cfg = config(tmp_path, sim.base_url)
        code, out, err = await discover(cfg, db)
        assert code == 1
        assert "page 2 failed 3 times" in err and "resume" in err
        assert rows(db, "SELECT count(*) FROM responses") == [(100,)]
        failing["page"] = ""
        code, out, err = await discover(cfg, db)
        assert code == 0, err
        sent_pages = [r.query["page"] for r in sim.sent if r.endpoint == "citations"]
    assert "resumed at page 2" in err
    assert out.strip() == (  # what one clean run says
        "discovered 250 of 250 results on 3 pages: queued 250 new outputs, "
        "0 already in the store; rejected 0"
    )
    assert sent_pages == ["1", "2", "2", "2", "2", "3"]  # page 1 never asked again
    assert rows(db, "SELECT count(*) FROM responses") == [(250,)]
    assert rows(db, "SELECT count(*) FROM jobs") == [(250,)]


async def test_killed_mid_way_it_resumes_and_stores_no_result_twice(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    sim_settings = SimulatorSettings(key=KEY, citations_per_timeframe=1200, latency_s=0.25)
    async with Simulator(sim_settings) as sim:
        results = keep_pages(sim)
        cfg = config(tmp_path, sim.base_url)
        args = ("--config", str(cfg), "--db", str(db), "discover", "--timeframe", "1w")
        process = await start_harvester(*args, env=ENV)
        await _until_pages_stored(db, 3)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        assert process.returncode == -signal.SIGKILL
        code, out, err = await discover(cfg, db)
        assert code == 0, err
    assert "resumed at page" in err
    assert out.strip() == (  # what one clean run says
        "discovered 1,200 of 1,200 results on 12 pages: queued 1,200 new outputs, "
        "0 already in the store; rejected 0"
    )
    assert rows(db, "SELECT count(*) FROM jobs") == [(1200,)]
    # No page stored twice, none lost, each result one the simulator listed.
    assert rows(db, "SELECT count(*), count(DISTINCT altmetric_id) FROM outputs") == [(1200, 1200)]
    stored_ids = {row[0] for row in rows(db, "SELECT altmetric_id FROM outputs")}
    assert stored_ids <= {r["altmetric_id"] for r in results}
    assert all(
        hashlib.sha256(body).hexdigest() == sha
        for sha, body in rows(
            db,
            "SELECT r.sha256, b.data FROM responses r JOIN bodies b ON b.id = r.body_id "
            "WHERE b.codec = 'identity' LIMIT 50",
        )
    )


async def _until_pages_stored(db: Path, pages: int) -> None:
    for _ in range(400):
        await asyncio.sleep(0.05)
        try:
            if rows(db, "SELECT count(*) FROM responses")[0][0] >= pages * 100:
                return
        except sqlite3.Error:
            continue
    raise AssertionError("the discovery stored no pages")


async def test_each_query_resumes_its_own_position_and_only_a_recent_one(
    tmp_path: Path,
) -> None:
    """A full discovery killed part-way keeps its place when another query (a shorter
    one) runs to its end; a place saved hours ago is of a listing that moved on."""
    db = tmp_path / "s.db"
    failing = {"page": "3"}

    async def broken(request: web.Request, fetch: FetchRequest) -> web.Response | None:
        if fetch.endpoint == "citations" and fetch.query.get("page") == failing["page"]:
            return text_response(503, "Service Unavailable")
        return None

    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=500)) as sim:
        sim.gates.append(broken)
        cfg = config(tmp_path, sim.base_url)
        code, _, _ = await discover(cfg, db)  # stops at page 3, its place saved
        assert code == 1
        code, out, err = await discover(cfg, db, "--max-pages", "2")  # another query
        assert code == 0, err
        assert "resumed" not in err and "on 2 pages" in out
        failing["page"] = ""
        code, out, err = await discover(cfg, db)
        assert code == 0, err
        assert "resumed at page 3" in err
        assert out.startswith("discovered 500 of 500 results on 5 pages: queued 500 new")
        # A place saved seven hours ago is dropped: the listing is asked from page 1.
        failing["page"] = "2"
        code, _, _ = await discover(cfg, db)
        assert code == 1
        with sqlite3.connect(db) as conn:
            [(key, value)] = conn.execute(
                "SELECT key, value FROM daemon_state WHERE key LIKE 'discover_position:%'"
            ).fetchall()
            position = json.loads(value)
            position["saved_at_s"] -= 7 * 3600
            conn.execute(
                "UPDATE daemon_state SET value = ? WHERE key = ?", (json.dumps(position), key)
            )
        conn.close()
        failing["page"] = ""
        code, out, err = await discover(cfg, db)
        assert code == 0, err
    assert "resumed" not in err and "on 5 pages" in out


async def test_with_the_counts_call_a_known_output_waiting_for_its_answer_is_done(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.db"
    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=30)) as sim:
        results = keep_pages(sim)
        cfg = config(tmp_path, sim.base_url, api={"endpoint": "counts"})
        code, _, err = await discover(cfg, tmp_path / "probe.db")
        assert code == 0, err
        queue(db, [Identifier("id", str(r["altmetric_id"])) for r in results[:5]])
        code, out, err = await discover(cfg, db)
        assert code == 0, err
    assert rows(db, "SELECT state, count(*) FROM jobs GROUP BY 1") == [("done", 30)]
    assert "5 already in the store" in out


async def test_bad_input_and_a_bad_key_get_clear_messages(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=10)) as sim:
        cfg = config(tmp_path, sim.base_url)
        code, _, err = await harvester_async(
            "--config", str(cfg), "--db", str(db), "discover", "--timeframe", "1w",
            env={"ALTMETRIC_API_KEY": "wrong"},
        )  # fmt: skip
        assert code == 3 and "API key rejected" in err
        code, _, err = await discover(cfg, db, "--issns", "12345678")
        assert code == 1 and "--issns: '12345678' is not an ISSN" in err
        code, _, err = await discover(cfg, db, "--doi-prefix", "nature")
        assert code == 1 and "--doi-prefix: 'nature' is not a DOI prefix" in err
        code, _, err = await harvester_async(
            "--config", str(cfg), "--db", str(db), "discover", "--timeframe", "2y", env=ENV
        )
        assert code == 2 and "invalid choice: '2y'" in err
        code, _, err = await harvester_async(
            "--config", str(cfg), "--db", str(db), "discover", "--timeframe", "1d"
        )
        assert code == 1 and "ALTMETRIC_API_KEY" in err
    assert [r for r in sim.sent if r.endpoint == "citations" and r.status == 200] == []


def listed_pages(results: list[dict[str, object]], latency_s: float = 0.0) -> Gate:
    """A gate answering the citations call with `results`, 100 a page (the query's
    total, a 404 past the end), each page after `latency_s`."""

    async def serve(request: web.Request, fetch: FetchRequest) -> web.Response | None:
        if fetch.endpoint != "citations":
            return None
        page = int(fetch.query.get("page", "1"))
        chunk = results[(page - 1) * 100 : page * 100]
        if not chunk:
            return text_response(404, "Not Found")
        await asyncio.sleep(latency_s)
        return web.json_response({"query": {"total": len(results)}, "results": chunk})

    return serve


def counts_result(altmetric_id: int, **identifiers: object) -> dict[str, object]:
    return {"altmetric_id": altmetric_id, "score": 1.5, "cited_by_posts_count": 2, **identifiers}


async def test_chapters_sharing_their_books_isbn_are_queued_a_job_each(tmp_path: Path) -> None:
    isbn = "9780306406157"
    chapters = [
        counts_result(900 + n, doi=f"10.5150/book.ch{n}", isbns=[isbn], type="chapter")
        for n in range(3)
    ]
    db = tmp_path / "s.db"
    async with Simulator(SimulatorSettings(key=KEY)) as sim:
        sim.gates.append(listed_pages(chapters))
        code, out, err = await discover(config(tmp_path, sim.base_url), db)
        assert code == 0, err
    assert "queued 3 new outputs, 0 already in the store" in out
    assert rows(db, "SELECT identifier FROM jobs ORDER BY id") == [
        ("10.5150/book.ch0",),
        ("10.5150/book.ch1",),
        ("10.5150/book.ch2",),
    ]
    assert rows(db, "SELECT altmetric_id FROM latest_outputs ORDER BY 1") == [
        (900,),
        (901,),
        (902,),
    ]
    assert rows(db, f"SELECT shared FROM aliases WHERE identifier = '{isbn}'") == [(1,)]
    queued = harvester("--db", str(db), "enqueue", stdin=f"doi:10.5150/book.ch1\nisbn:{isbn}\n")
    assert queued.stdout.strip() == "added 1, already queued 1, rejected 0", queued.stderr


async def test_a_resumed_discovery_ends_as_one_clean_run_rejects_and_exit_code_too(
    tmp_path: Path,
) -> None:
    """Killed after the page holding a result that names no output was stored, the
    discovery run again says what one clean run says, and exits 1 as it does."""
    results = [counts_result(5000 + n, doi=f"10.5150/resume.{n}") for n in range(500)]
    results[150] = {"score": 3.0, "title": "names no output"}  # on page 2
    clean, killed = tmp_path / "clean.db", tmp_path / "killed.db"
    async with Simulator(SimulatorSettings(key=KEY)) as sim:
        sim.gates.append(listed_pages(results, latency_s=0.3))
        cfg = config(tmp_path, sim.base_url)
        clean_code, clean_out, clean_err = await discover(cfg, clean)
        args = ("--config", str(cfg), "--db", str(killed), "discover", "--timeframe", "1w")
        process = await start_harvester(*args, env=ENV)
        await _until_position(killed, lambda totals: totals["rejected"] >= 1)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        code, out, err = await discover(cfg, killed)
    assert (clean_code, clean_out.strip()) == (
        1,
        "discovered 499 of 500 results on 5 pages: queued 499 new outputs, "
        "0 already in the store; rejected 1",
    )
    assert (code, out) == (clean_code, clean_out)
    assert "resumed at page 3" in err
    [reject] = [line for line in clean_err.splitlines() if line.startswith("rejected ")]
    assert reject.startswith("rejected page 2, result 51: no identifier")
    assert reject in err.splitlines()  # the earlier run's reject shown again
    assert rows(killed, "SELECT count(*) FROM responses") == [(499,)]
    assert rows(killed, POSITIONS) == [(0,)]  # a finished discovery leaves no position


async def _until_position(db: Path, predicate: Callable[[dict[str, int]], bool]) -> None:
    """Until the discovery's saved position holds totals that satisfy `predicate`."""
    for _ in range(600):
        await asyncio.sleep(0.02)
        try:
            saved = rows(db, "SELECT value FROM daemon_state WHERE key LIKE 'discover_position:%'")
        except sqlite3.Error:
            continue
        if saved and predicate(json.loads(saved[0][0])["totals"]):
            return
    raise AssertionError("no such position was saved")
