"""A refused key is named as the server named it: `run`, `check` and `discover` say
HTTP 401 or HTTP 403, whichever came, with the same advice and exit code 3, and leave
every job pending."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from helpers import KEY, dois, harvester_async, queue, rows, write_config

from harvester.sim.server import FetchRequest, Simulator, SimulatorSettings, text_response


@pytest.mark.parametrize("status", [401, 403])
async def test_each_command_names_the_status_it_got(tmp_path: Path, status: int) -> None:
    async def refuse(request: web.Request, fetch: FetchRequest) -> web.Response | None:
        return text_response(status, "Unauthorized" if status == 401 else "Forbidden")

    db = queue(tmp_path / "s.db", dois(6, "10.5555/refused."))
    async with Simulator(SimulatorSettings(key=KEY)) as simulator:
        simulator.gates.insert(0, refuse)
        cfg = write_config(tmp_path / "h.toml", simulator.base_url)
        base = ("--config", str(cfg), "--db", str(db))
        env = {"ALTMETRIC_API_KEY": KEY}
        run = await harvester_async(*base, "run", "--drain", env=env)
        check = await harvester_async(*base, "check", env=env)
        discover = await harvester_async(*base, "discover", "--timeframe", "1d", env=env)
    assert [run[0], check[0], discover[0]] == [3, 3, 3]
    assert run[2].strip().splitlines()[-1] == (
        f"harvester run: API key rejected (HTTP {status}); unfinished jobs stay pending"
    )
    assert f"the API refused the key for the fetch call (HTTP {status})" in check[1]
    assert discover[2].strip().splitlines()[-1] == (
        f"harvester discover: API key rejected (HTTP {status})"
    )
    assert rows(db, "SELECT state, max(attempts) FROM jobs GROUP BY state") == [("pending", 0)]
