"""What `harvester status` reports. Read-only: it opens the store read-only, so it
can run while the daemon writes (WAL lets readers and the writer proceed together)."""

from __future__ import annotations

import time
from typing import Any

from harvester.store import JOB_STATES, Store

THROUGHPUT_WINDOWS_S = {"last_1m": 60, "last_5m": 300, "last_15m": 900}


def collect_status(store: Store) -> dict[str, Any]:
    """The status document; `status --json` prints it as is."""
    jobs = store.counts_by_state()
    now_s = time.time()
    throughput = {
        name: round(store.responses_since(now_s - window_s) / window_s, 3)
        for name, window_s in THROUGHPUT_WINDOWS_S.items()
    }
    errors = [
        {"state": state, "error": error, "count": count}
        for state, error, count in store.top_errors()
    ]
    return {
        "store": str(store.path),
        "jobs": jobs,
        "total": sum(jobs.values()),
        "responses": store.count_responses(),
        "throughput_per_s": throughput,
        "errors": errors,
    }


def render_status(status: dict[str, Any]) -> str:
    """The status as a short table for people."""
    total = status["total"] or 1
    lines = [f"store  {status['store']}", "", "jobs"]
    for state in JOB_STATES:
        count = status["jobs"][state]
        lines.append(f"  {state:<12}{count:>12,}  {count / total:6.1%}")
    lines.append(f"  {'total':<12}{status['total']:>12,}")
    lines.append(f"responses stored {status['responses']:,}")
    rates = status["throughput_per_s"]
    lines.append(
        "throughput  "
        + "  ".join(f"{name.removeprefix('last_')}: {rate:,.1f}/s" for name, rate in rates.items())
    )
    if status["errors"]:
        lines.append("")
        lines.append("commonest errors")
        for entry in status["errors"]:
            lines.append(f"  {entry['count']:>8,}  {entry['state']:<8} {entry['error']}")
    return "\n".join(lines)
