"""The heartbeat's service loop: the watchdog goes quiet when the store stops answering."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

from helpers import NotifyListener, has

from harvester.harvest.quota import QuotaView
from harvester.harvest.ratestate import LearnedRate, RateView
from harvester.harvest.report import LiveView
from harvester.model import JobState, Outcome, QuotaMode
from harvester.service.heartbeat import ServiceLoop
from harvester.service.notify import Notifier
from harvester.store import Store
from harvester.store.aio import AsyncStore


class StillHarvest:
    """The part of the pipeline the service loop reads."""

    def live_view(self) -> LiveView:
        quota = QuotaView(
            limit=100,
            used=10,
            remaining=90,
            mode=QuotaMode.FULL,
            source="ledger",
            window_s=3600.0,
            refused_until_s=None,
            up_thresholds={QuotaMode.FULL: 90, QuotaMode.ORIGINAL_TWEETS: 98},
            at_s=time.time(),
        )
        return LiveView(
            finished=3,
            outstanding=1,
            concurrency=2,
            requests_per_s=1.0,
            requests={Outcome.OK: 3},
            outcomes=Counter({JobState.DONE: 3}),
            quota=quota,
            rate=RateView(
                configured_per_s=2.0,
                learned_per_s=1.0,
                allowance_per_s=None,
                allowed_per_s=1.0,
                burst=1,
                limited_by="learned",
            ),
            learned_rate=LearnedRate(1.0, 1, 1.2, time.time()),
        )


async def test_the_watchdog_stops_while_the_store_fails(
    listener: NotifyListener, db_path: Path
) -> None:
    store = Store(db_path)
    store_thread = AsyncStore(store)
    notifier = Notifier({"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "100000"})
    service = ServiceLoop(StillHarvest(), store_thread, notifier, "2026-11-22T00:00:00Z")
    task = asyncio.create_task(service.run())
    try:
        await listener.wait_for(has("STATUS"))
        await asyncio.sleep(0.3)
        assert sum("WATCHDOG" in message for message in listener.messages) >= 3
        saved = store.state.load("heartbeat")
        assert saved is not None and json.loads(saved[0])["concurrency"] == 2

        await store_thread._run(store.conn.close)  # the store stops answering
        service.report_soon()
        await asyncio.sleep(0.2)
        quiet_from = len(listener.messages)
        await asyncio.sleep(0.5)  # ten watchdog intervals
        assert not any("WATCHDOG" in message for message in listener.messages[quiet_from:])
        assert not task.done()  # the loop lives on, and says what is wrong in the log
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        notifier.close()
        store_thread.shutdown()
