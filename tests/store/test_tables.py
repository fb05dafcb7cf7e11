"""The store as tables: the tools researchers open it with."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from datasette.app import Datasette
from helpers import rows

# -- the tools researchers use ------------------------------------------------------------------


async def test_the_store_opens_in_datasette_as_is(harvested: Path) -> None:
    datasette = Datasette([str(harvested)])
    name = harvested.stem
    listing = await datasette.client.get(f"/{name}.json")
    assert listing.status_code == 200
    tables = {entry["name"] for entry in listing.json()["tables"]}
    assert {"jobs", "responses", "bodies", "outputs", "counts", "tweets", "posts"} <= tables
    views = {entry["name"] for entry in listing.json()["views"]}
    assert {"latest_outputs", "mentions"} <= views
    mentions = await datasette.client.get(f"/{name}/mentions.json?_shape=array&_size=5")
    assert mentions.status_code == 200 and len(mentions.json()) == 5
    assert {"source", "post_key", "tweet_id", "author_id"} <= set(mentions.json()[0])
    latest = await datasette.client.get(f"/{name}/latest_outputs.json?_shape=array&_size=5")
    assert latest.status_code == 200 and len(latest.json()) == 5
    assert {"altmetric_id", "score", "journal"} <= set(latest.json()[0])


async def test_sqlite_utils_lists_the_tables(harvested: Path) -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / "sqlite-utils"), "tables", str(harvested), "--counts"],
        capture_output=True,
        text=True,
        check=True,
    )
    listed = {entry["table"]: entry["count"] for entry in json.loads(result.stdout)}
    assert listed["outputs"] == rows(harvested, "SELECT count(*) FROM outputs")[0][0]
    assert {"score_context", "readers", "zstd_dictionaries"} <= set(listed)
