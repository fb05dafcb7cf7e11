"""Rate fidelity: does the harvester use the whole allowed rate, and no more?

    .venv/bin/python bench/ratefidelity.py [--rate 50] [--seconds 32] [--server-burst 1]
    .venv/bin/python bench/ratefidelity.py --smoke   # 2 s (CI)

The simulator runs in this process, enforcing R requests/s with a token bucket
(answering 429 beyond it) and 200 ms latency; `harvester run --drain` runs as a
subprocess configured at the same R. With a burst of 1, a token bucket loses each
wake-up's lateness (the bucket must drain fully before the next admission), ~3% at
50/s; a burst of 2 lets it catch up, so the default here is client burst 2 against
a server bucket of 5 (100 ms of tolerance at 50/s). Prints the achieved rate over the
run as a fraction of R, and every refusal with when it came. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from harvester.sim.server import Simulator, SimulatorSettings

KEY = "fidelity-key"
SECONDS, SMOKE_SECONDS = 32.0, 2.0
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"


async def main(rate: float, seconds: float, server_burst: int, client_burst: int) -> None:
    settings = SimulatorSettings(
        key=KEY,
        latency_s=0.2,
        record_sent=False,
        body_pool=500,
        rate_limit_per_s=rate,
        rate_limit_burst=server_burst,
    )
    jobs = int(rate * seconds)
    async with Simulator(settings) as simulator:
        with tempfile.TemporaryDirectory(prefix="harvester-bench-") as tmp:
            db, config = Path(tmp) / "f.db", Path(tmp) / "f.toml"
            config.write_text(
                f'[api]\nbase_url = "{simulator.base_url}"\n'
                f"[rate]\nrequests_per_s = {rate}\nburst = {client_burst}\n"
                "[workers]\nconcurrency = 32\n"
            )
            lines = "".join(f"10.{1000 + n % 9000}/fidelity.{n}\n" for n in range(jobs))
            enqueue = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "harvester",
                "--db",
                str(db),
                "enqueue",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
            )
            await enqueue.communicate(lines.encode())
            if enqueue.returncode != 0:
                raise SystemExit("harvester enqueue failed")
            run = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "harvester",
                "--config",
                str(config),
                "--db",
                str(db),
                "run",
                "--drain",
                env={**os.environ, "ALTMETRIC_API_KEY": KEY},
                stderr=asyncio.subprocess.DEVNULL,
            )
            if await run.wait() != 0:
                raise SystemExit("harvester run failed")
        gate = simulator.rate_limit
        assert gate is not None and gate.first_pass_s is not None and gate.last_pass_s
        span_s = gate.last_pass_s - gate.first_pass_s
        achieved = (gate.passed - 1) / span_s
        print(
            f"rate fidelity: server enforces {rate:g}/s (burst {server_burst}), latency 200 ms;"
            f" harvester at {rate:g}/s burst {client_burst}: {gate.passed:,} requests over"
            f" {span_s:.1f} s"
        )
        print(
            f"  achieved {achieved:.2f}/s = {achieved / rate:.4f} of R; {gate.refusals} refusals",
            end="",
        )
        late = [t - gate.first_pass_s for t in gate.refusal_times_s]
        print(f" (at {', '.join(f'{t:.1f} s' for t in late)})" if late else "")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, help=f"length of the run (default {SECONDS:g})")
    parser.add_argument("--server-burst", type=int, default=5)
    parser.add_argument("--client-burst", type=int, default=2)
    parser.add_argument(
        "--smoke", action="store_true", help=f"tiny run for CI: {SMOKE_SECONDS:g} s by default"
    )
    arguments = parser.parse_args()
    if arguments.seconds is None:
        arguments.seconds = SMOKE_SECONDS if arguments.smoke else SECONDS
    if arguments.smoke:
        print(SMOKE_NOTE, flush=True)
    asyncio.run(
        main(arguments.rate, arguments.seconds, arguments.server_burst, arguments.client_burst)
    )
