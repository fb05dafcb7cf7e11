"""A naive reference harvester: the plain script the product's CPU is compared with.

    .venv/bin/python bench/naive.py --base-url URL --key K --ids FILE --db FILE
    .venv/bin/python bench/naive.py --smoke    # against its own simulator (CI)

aiohttp with a semaphore, sqlite3, one row per answer (identifier, status, body,
sha256), a commit every 100 rows. No leases, rate limiter, ledger, retries or logging.
It imports nothing from the harvester; bench/ratio.py runs it against the same
simulator and identifiers as `harvester run --drain`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sqlite3
from urllib.parse import quote

import aiohttp


async def fetch(session, semaphore, base_url, key, identifier):
    async with semaphore:
        url = f"{base_url}/fetch/doi/{quote(identifier, safe='/')}"
        async with session.get(url, params={"key": key}) as response:
            return identifier, response.status, await response.read()


def read_identifiers(path):
    with open(path) as file:
        return [line.strip().removeprefix("doi:") for line in file if line.strip()]


async def harvest(base_url, key, identifiers, db_path, concurrency=64):
    db = sqlite3.connect(db_path)
    db.execute(
        "CREATE TABLE IF NOT EXISTS responses "
        "(identifier TEXT, status INTEGER, body BLOB, sha256 TEXT)"
    )
    semaphore = asyncio.Semaphore(concurrency)
    stored = 0
    async with aiohttp.ClientSession() as session:
        tasks = [fetch(session, semaphore, base_url, key, i) for i in identifiers]
        for next_answer in asyncio.as_completed(tasks):
            identifier, status, body = await next_answer
            digest = hashlib.sha256(body).hexdigest()
            db.execute(
                "INSERT INTO responses VALUES (?, ?, ?, ?)", (identifier, status, body, digest)
            )
            stored += 1
            if stored % 100 == 0:
                db.commit()
    db.commit()
    db.close()
    return stored


def smoke():
    """CI: 50 identifiers against a simulator of our own (the only use of the harvester)."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    simulator = subprocess.Popen(
        [sys.executable, "-m", "harvester", "simulate", "--port", "0", "--key", "smoke"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert simulator.stdout is not None
        base_url = simulator.stdout.readline().split(" on ")[1].split()[0]
        with tempfile.TemporaryDirectory(prefix="naive-smoke-") as tmp:
            ids = Path(tmp) / "ids.txt"
            ids.write_text("".join(f"doi:10.{1000 + n}/smoke.{n}\n" for n in range(50)))
            identifiers = read_identifiers(ids)
            stored = asyncio.run(harvest(base_url, "smoke", identifiers, Path(tmp) / "naive.db"))
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    print(f"smoke run: stored {stored} answers; this figure means nothing")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--key", help="the API key")
    parser.add_argument("--ids", help="identifiers, one DOI (or doi:DOI) a line")
    parser.add_argument("--db", help="SQLite file to write")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    if args.smoke:
        smoke()
        return
    if not (args.base_url and args.key and args.ids and args.db):
        parser.error("--base-url, --key, --ids and --db are required")
    identifiers = read_identifiers(args.ids)
    asyncio.run(harvest(args.base_url, args.key, identifiers, args.db, args.concurrency))


if __name__ == "__main__":
    main()
