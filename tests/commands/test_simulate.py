"""`simulate`: the bundled simulator served on loopback until stopped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from helpers import start_harvester


@contextlib.asynccontextmanager
async def simulate(*options: str) -> AsyncIterator[str]:
    """`harvester simulate --port 0 --key k OPTIONS` while it serves: its base URL."""
    process = await start_harvester(
        "simulate", "--port", "0", "--key", "k", *options,
        stdout=asyncio.subprocess.PIPE, stderr=None,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        yield line.split(" on ")[1].split()[0]
    finally:
        process.terminate()
        await process.wait()


async def test_simulate_serves_on_loopback_until_stopped() -> None:
    async with simulate() as base_url, aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/fetch/doi/10.1000/x?key=k") as response:
            assert response.status in (200, 404)
        async with session.get(f"{base_url}/fetch/doi/10.1000/x?key=bad") as response:
            assert response.status == 403


async def test_simulate_can_enforce_a_rate_limit() -> None:
    statuses, retry_after, hourly = [], [], []
    async with simulate("--rate-limit", "1", "--retry-after") as base_url:
        async with aiohttp.ClientSession() as session:
            for n in range(3):
                async with session.get(f"{base_url}/fetch/doi/10.1000/r{n}?key=k") as response:
                    statuses.append(response.status)
                    retry_after.append(response.headers.get("Retry-After"))
                    hourly.append(response.headers.get("X-HourlyRateLimit-Remaining"))
        assert statuses[0] in (200, 404) and statuses[1:] == [429, 429]
        assert retry_after[1:] == ["1", "1"]
        assert all(value is not None for value in hourly)


async def test_sigterm_stops_the_simulator_at_once() -> None:
    process = await start_harvester(
        "simulate", "--port", "0", "--key", "k",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    await asyncio.wait_for(process.stdout.readline(), timeout=30)  # serving
    process.terminate()
    _, err = await asyncio.wait_for(process.communicate(), timeout=10)
    assert process.returncode == -15
    assert "Traceback" not in err.decode()
