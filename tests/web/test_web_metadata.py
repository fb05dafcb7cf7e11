"""Datasette's metadata of a store: every table, view and column of a real harvested
store described (and nothing described that the store lacks), the README's example
queries as canned queries that run, and the internal tables hidden."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from datasette.app import Datasette
from helpers import ROOT, rows

from harvester.web.metadata import HIDDEN_TABLES, LATEST_ANSWER, README_QUERIES, store_metadata


def store_columns(store: Path) -> dict[str, list[str]]:
    """Every table and view of the store (SQLite's own aside) and its columns."""
    names = rows(
        store,
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
        " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )
    return {
        name: [
            column for (column,) in rows(store, f"SELECT name FROM pragma_table_xinfo('{name}')")
        ]
        for (name,) in names
    }


def test_every_table_view_and_column_of_a_harvested_store_is_described(
    harvested_by_cli: Callable[[int], Path],
) -> None:
    store = harvested_by_cli(40)
    tables = store_metadata("harvested")["databases"]["harvested"]["tables"]
    actual = store_columns(store)
    assert {"jobs", "responses", "bodies", "latest_outputs", "mentions"} <= set(actual)
    undescribed = []
    for table, columns in actual.items():
        described = tables.get(table, {})
        if not described.get("description"):
            undescribed.append(table)
        undescribed += [
            f"{table}.{column}"
            for column in columns
            if not described.get("columns", {}).get(column)
        ]
    assert undescribed == [], "describe these in harvester/store/descriptions.py"
    stale = [
        f"{table}.{column}"
        for table, described in tables.items()
        for column in ["", *described["columns"]]
        if table not in actual or (column and column not in actual[table])
    ]
    assert stale == [], "described in harvester/store/descriptions.py, but not in a store"


def readme_example_queries() -> list[tuple[str, str]]:
    """(title, SQL) of each query of the README's "Example queries" block."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Example queries", 1)[1]
    block = section.split("```sql\n", 1)[1].split("```", 1)[0]
    found = re.findall(r"^-- \d+\. (.+)\n((?:(?!-- \d+\.).*\n)+)", block, flags=re.MULTILINE)
    return [(title, squeezed(sql)) for title, sql in found]


def squeezed(sql: str) -> str:
    return " ".join(sql.split()).rstrip(";")


def test_the_readme_example_queries_are_the_canned_queries() -> None:
    canned = [(query.title, squeezed(query.sql)) for query in README_QUERIES]
    assert canned == readme_example_queries()
    assert len(canned) >= 7
    queries = store_metadata("s")["databases"]["s"]["queries"]
    assert [*queries] == [query.name for query in (*README_QUERIES, LATEST_ANSWER)]


async def test_every_canned_query_runs_on_a_harvested_store(
    harvested_by_cli: Callable[[int], Path],
    datasette_of: Callable[[Path, Path | None], Datasette],
) -> None:
    datasette = datasette_of(harvested_by_cli(40), None)
    results = {}
    for query in README_QUERIES:
        asked = "".join(f"&{name}={literal.strip(chr(39))}" for name, literal in query.params)
        response = await datasette.client.get(f"/harvested/{query.name}.json?_shape=array{asked}")
        assert response.status_code == 200, (query.name, response.text)
        results[query.name] = response.json()
    assert results["harvest-progress"] == [{"state": "done", "count(*)": 40}]
    nature = rows(
        harvested_by_cli(40), "SELECT count(*) FROM latest_outputs WHERE journal = 'Nature'"
    )
    assert len(results["top-in-journal"]) == min(20, nature[0][0]) > 0
    # The journal is asked for (issue 24): another gives that journal's outputs.
    [(journal, count)] = rows(
        harvested_by_cli(40),
        "SELECT journal, count(*) FROM latest_outputs WHERE journal != 'Nature' GROUP BY 1"
        " ORDER BY 2 DESC LIMIT 1",
    )
    response = await datasette.client.get(
        f"/harvested/top-in-journal.json?_shape=array&journal={journal}"
    )
    assert len(response.json()) == min(20, count) > 0
    assert {row["doi"] for row in response.json()} <= {
        doi
        for (doi,) in rows(
            harvested_by_cli(40), f"SELECT doi FROM latest_outputs WHERE journal = '{journal}'"
        )
    }
    queries = store_metadata("harvested")["databases"]["harvested"]["queries"]
    assert queries["top-in-journal"]["params"] == ["journal"]
    assert "'Nature'" not in queries["top-in-journal"]["sql"]
    response = await datasette.client.get(
        f"/harvested/{LATEST_ANSWER.name}.json?_shape=array&identifier=10.1000/harvested.3"
    )
    [answer] = response.json()
    assert answer["identifier"] == "10.1000/harvested.3"
    assert answer["answer"].startswith("{")


async def test_the_store_page_lists_the_tables_described_and_hides_the_internal_ones(
    harvested_by_cli: Callable[[int], Path],
    datasette_of: Callable[[Path, Path | None], Datasette],
) -> None:
    datasette = datasette_of(harvested_by_cli(40), None)
    listing = (await datasette.client.get("/harvested.json")).json()
    hidden = {table["name"] for table in listing["tables"] if table["hidden"]}
    assert hidden >= HIDDEN_TABLES
    assert {"jobs", "outputs", "bodies"}.isdisjoint(hidden)
    page = (await datasette.client.get("/harvested/latest_outputs")).text
    assert "The latest snapshot of each output" in page
    assert "the Altmetric score (altmetric_score.score, or score)" in page
