"""The daemon's scheduled export (`[schedule] export_every`, `export_dataset`): one run
of `export --dataset` in a child process (`dataset.child`), awaited on the event loop.

A process of its own, so that neither the export's CPU (Arrow, zstd) nor its memory
(pyarrow, row groups) is the daemon's, and it runs niced below the harvest. It opens
the store read-only: WAL lets the writer go on meanwhile, never waiting for it. When
the daemon stops, the child is sent SIGTERM and is awaited (killed after
STOP_GRACE_S): a run stopped before its commit leaves the dataset as it was.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from harvester.dataset.child import command
from harvester.errors import DatasetError

STOP_GRACE_S = 10.0


async def export_in_child(store_path: Path, directory: str) -> dict[str, Any]:
    """Run one export into `directory` (`~` is the home folder); what it did, for the
    schedule's `last` and its log event."""
    process = await asyncio.create_subprocess_exec(
        *command(store_path, directory),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await process.communicate()
    except asyncio.CancelledError:
        await _stop(process)
        raise
    if process.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {process.returncode}"
        raise DatasetError(f"the export to {directory} failed: {why}")
    summary = json.loads(out)
    return {
        "directory": summary["directory"],
        "run": summary["run"],
        "rows": sum(summary["rows"].values()),
        "files": summary["files"],
        "watermark": summary["watermark"],
        "seconds": summary["seconds"],
    }


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_S)
    except TimeoutError:
        process.kill()
        await process.wait()
