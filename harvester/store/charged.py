"""Which tweet IDs are charged within the quota window, answered in memory.

The ledger stores one row per charge (`ledger.TweetLedger`): a list of IDs and its
time. Asking SQLite whether each of an answer's IDs is among 2,000,000 charged ones
would cost a random B-tree page per ID, so the writing connection keeps every charged
ID here instead, in numpy: sorted int64 runs with the charge time of each ID beside it,
plus a dict of the most recent IDs. Memory is ~16 bytes an ID, ~32 MB for 2,000,000.

A lookup is memory-bound (a random read of a large array misses the cache), and a numpy
call costs a microsecond or more, so both are kept few:
- Each ID is held as a key, the ID times an odd constant (a bijection of 64-bit
  integers), so keys are spread evenly. A bit array indexed by a key's top bits
  (`KeyFilter`, 16-32 bits per key, small enough to stay in the cache) says that most
  IDs never charged are new without reading a run.
- A long run has a directory, where each range of keys starts; a lookup reads it, then
  a window of 48 keys that holds the whole range, where a binary search of 2,000,000
  keys misses the cache a dozen times.

New IDs go to the dict; a full dict becomes a sorted run, and a run is merged into the
one before it once that one is less than `FANOUT` times its size (each merge is one
pass, `np.insert` at positions found by `np.searchsorted`). So an ID is copied a few
times in its life instead of the whole index per charge, and a lookup searches two or
three runs. Charges older than the horizon (what the store has pruned) count as not
charged, and merges drop them.

This module knows nothing of SQL: the ledger loads it, and tells it what committed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

IdArray = npt.NDArray[np.int64]
TimeArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
_Item = TypeVar("_Item", bound=np.generic)

RECENT_MAX = 65_536  # IDs in the dict before they become a sorted run (~6 MB of dict)
FANOUT = 8  # a run is merged into the one before it once that one is under 8x its size
DIRECTORY_MIN = 65_536  # runs this long get a directory; shorter ones are searched
PER_BUCKET = 16  # keys per directory bucket on average
WINDOW = np.arange(48, dtype=np.int64)  # keys read per lookup: a bucket holds more once in 10^11
SMALL_BATCH = 256  # fewer IDs than this are sorted and made distinct by Python
FILTER_BITS_PER_KEY = 16  # at least: <= 6% of new IDs pass it when built, 12% when rebuilt
FILTER_MIN_BITS = 20  # 128 KB
_BIT = np.array([1 << n for n in range(8)], dtype=np.uint8)
_SPREAD = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15, odd: a bijection

# How a charge's IDs are stored: 8 bytes each, big-endian (upgrade_ledger's view reads
# them in plain SQL), a third of their JSON text, and read back without parsing.
STORED_ID = np.dtype(">i8")


def spread(ids: IdArray) -> IdArray:
    """The key a run holds for each ID (multiplication wraps around, as meant)."""
    return ids * _SPREAD


class Run:
    """Distinct keys (`spread` IDs), sorted, with the time (Unix seconds) each was
    charged, and for a long run the directory of where each bucket of keys starts."""

    def __init__(self, keys: IdArray, times: TimeArray) -> None:
        self.keys = keys
        self.times = times
        self._bits = 0
        self._starts: npt.NDArray[np.int32] | None = None
        if len(keys) >= DIRECTORY_MIN:
            bits = max(1, int(math.log2(len(keys) / PER_BUCKET)))
            lowest = (np.arange(1 << bits, dtype=np.int64) - (1 << (bits - 1))) << (64 - bits)
            starts = np.append(np.searchsorted(keys, lowest), len(keys))
            # A bucket longer than the window (about never) leaves the run without one.
            if np.diff(starts).max() <= len(WINDOW):
                self._bits = bits
                self._starts = starts.astype(np.int32)

    def __len__(self) -> int:
        return len(self.keys)

    def charged(self, keys: IdArray, since_s: float) -> IdArray:
        """The positions in `keys` of those this run holds with a charge at or after
        `since_s` (as few numpy calls as can be: a call costs about a microsecond)."""
        if self._starts is None:
            at = np.searchsorted(self.keys, keys)
            np.minimum(at, len(self.keys) - 1, out=at)
            rows = np.flatnonzero(np.equal(self.keys[at], keys))
            at = at[rows]
        else:
            # The window from a bucket's start holds the whole bucket; moved back from
            # the end of the keys, it still does. An equal key lies in its bucket.
            first = self._starts[_buckets(keys, self._bits)]
            np.minimum(first, len(self.keys) - len(WINDOW), out=first)
            same = np.equal(self.keys[first[:, None] + WINDOW], keys[:, None])
            rows, columns = same.nonzero()
            at = first[rows] + columns
        return rows[np.greater_equal(self.times[at], since_s)]


def _buckets(keys: IdArray, bits: int) -> IdArray:
    """The top `bits` of each key, as a bucket number from 0 (keys sort by it)."""
    return (keys >> np.int64(64 - bits)) + np.int64(1 << (bits - 1))


def empty_run() -> Run:
    return Run(np.empty(0, np.int64), np.empty(0, np.float64))


class KeyFilter:
    """One bit per value of a key's top bits, set for every key added: a clear bit means
    "never charged", so most new IDs skip the runs and the dict (a bit array of 16 bits
    per key stays in the cache where the runs cannot). Bits of aged-out keys stay set
    until the index rebuilds the filter."""

    def __init__(self, keys: IdArray) -> None:
        self.bits = min(max(int(len(keys) * FILTER_BITS_PER_KEY).bit_length(), FILTER_MIN_BITS), 31)
        self.capacity = max(len(keys), RECENT_MAX)  # keys it takes before it is rebuilt
        self.added = 0
        self._bytes = np.zeros(1 << (self.bits - 3), dtype=np.uint8)
        for start in range(0, len(keys), 1 << 18):  # in slices: small temporary arrays
            self.add(keys[start : start + (1 << 18)])

    def add(self, keys: IdArray) -> None:
        slots = _buckets(keys, self.bits)
        np.bitwise_or.at(self._bytes, slots >> 3, _BIT[slots & 7])
        self.added += len(keys)

    def maybe(self, keys: IdArray) -> IdArray:
        """The positions in `keys` of those that may have been added."""
        slots = _buckets(keys, self.bits)
        return np.flatnonzero(np.bitwise_and(self._bytes[slots >> 3], _BIT[slots & 7]))

    @property
    def full(self) -> bool:
        return self.added > 2 * self.capacity


class ChargedIndex:
    """Every tweet ID charged at or after `horizon_s`, with when; IDs charged before it
    are gone from the store and count as not charged."""

    def __init__(self, run: Run, horizon_s: float = -math.inf) -> None:
        self.horizon_s = horizon_s
        self._runs: list[Run] = [run] if len(run) else []
        self._recent: dict[int, float] = {}
        self._filter = KeyFilter(run.keys)

    @classmethod
    def from_charges(
        cls, chunks: Iterable[Sequence[tuple[float, bytes]]], expected: int = 0
    ) -> ChargedIndex:
        """The index of stored charges, oldest first, in chunks of (time, JSON array of
        IDs) rows; `expected` IDs in all (the arrays grow if there are more)."""
        return cls(run_of_charges(chunks, expected))

    def __len__(self) -> int:
        """IDs held, aged-out ones not merged away yet included."""
        return sum(len(run) for run in self._runs) + len(self._recent)

    def new_ids(self, ids: IdArray, since_s: float) -> IdArray:
        """Of `ids` (sorted, distinct), those not charged at or after `since_s` (nor
        after the horizon): the ones a charge now must pay for."""
        since_s = max(since_s, self.horizon_s)
        keys = spread(ids)
        maybe = self._filter.maybe(keys)
        if not len(maybe):
            return ids
        unseen = np.ones(len(ids), dtype=bool)
        unseen[maybe[self._charged(ids[maybe], keys[maybe], since_s)]] = False
        return ids[unseen]

    def _charged(self, ids: IdArray, keys: IdArray, since_s: float) -> IdArray:
        """The positions in `ids` of those charged at or after `since_s`."""
        charged = [run.charged(keys, since_s) for run in self._runs]
        if self._recent:
            recent = self._recent.get
            never = -math.inf
            charged.append(
                np.array(
                    [
                        n
                        for n, tweet_id in enumerate(ids.tolist())
                        if recent(tweet_id, never) >= since_s
                    ],
                    dtype=np.int64,
                )
            )
        return np.concatenate(charged) if charged else np.empty(0, dtype=np.int64)

    def add(self, ids: IdArray, time_s: float) -> None:
        """Record a committed charge of `ids` (each one new, or charged again after aging out)."""
        self._recent.update(dict.fromkeys(ids.tolist(), time_s))
        self._filter.add(spread(ids))
        if len(self._recent) >= RECENT_MAX:
            self._flush_recent()
        if self._filter.full:
            self._filter = KeyFilter(self._live_keys())

    def age_out(self, horizon_s: float) -> None:
        """The store no longer holds charges before `horizon_s` (they were pruned)."""
        self.horizon_s = max(self.horizon_s, horizon_s)

    def _flush_recent(self) -> None:
        ids = np.fromiter(self._recent.keys(), dtype=np.int64, count=len(self._recent))
        times = np.fromiter(self._recent.values(), dtype=np.float64, count=len(self._recent))
        self._recent.clear()
        keys = spread(ids)
        order = np.argsort(keys)
        self._runs.append(Run(keys[order], times[order]))
        while len(self._runs) > 1 and len(self._runs[-2]) < FANOUT * len(self._runs[-1]):
            newer = self._runs.pop()
            self._runs[-1] = merge_runs(self._runs[-1], newer, self.horizon_s)

    def _live_keys(self) -> IdArray:
        """Every key charged at or after the horizon, in no order."""
        since_s = self.horizon_s
        recent = [tweet_id for tweet_id, at_s in self._recent.items() if at_s >= since_s]
        live = [_live(run, since_s)[0] for run in self._runs]
        return np.concatenate([*live, spread(np.array(recent, dtype=np.int64))])


def merge_runs(older: Run, newer: Run, horizon_s: float) -> Run:
    """One sorted run of both, without the charges before `horizon_s`; where both hold
    an ID, the newer charge wins. A single pass: `np.insert` at the positions found."""
    keys, times = _live(older, horizon_s)
    new_keys, new_times = _live(newer, horizon_s)
    if not len(keys):
        return Run(new_keys, new_times)
    at = np.searchsorted(keys, new_keys)
    clipped = np.minimum(at, len(keys) - 1)
    both = np.equal(keys[clipped], new_keys)
    if both.any():
        keep = np.ones(len(keys), dtype=bool)
        keep[clipped[both]] = False
        keys, times = keys[keep], times[keep]
        at = np.searchsorted(keys, new_keys)
    return Run(np.insert(keys, at, new_keys), np.insert(times, at, new_times))


def _live(run: Run, horizon_s: float) -> tuple[IdArray, TimeArray]:
    """A run's keys and times without the charges before `horizon_s`."""
    if not len(run) or run.times.min() >= horizon_s:
        return run.keys, run.times
    live = np.greater_equal(run.times, horizon_s)
    return run.keys[live], run.times[live]


def run_of_charges(chunks: Iterable[Sequence[tuple[float, bytes]]], expected: int = 0) -> Run:
    """The sorted run of stored charges, given oldest first (an ID in several keeps its
    latest charge), `expected` IDs in all. Read chunk by chunk into arrays of that
    size, so that loading 2,000,000 IDs never holds much more than the run itself."""
    keys = np.empty(expected, np.int64)
    times = np.empty(expected, np.float64)
    filled = 0
    for chunk in chunks:
        decoded = [np.frombuffer(blob, STORED_ID) for _, blob in chunk]
        counts = [len(ids) for ids in decoded]
        end = filled + sum(counts)
        if end > len(keys):  # the rows hold more than they said
            keys, times = _grown(keys, filled, end), _grown(times, filled, end)
        if decoded:
            np.concatenate(decoded, out=keys[filled:end], casting="unsafe")
        times[filled:end] = np.repeat(np.array([at_s for at_s, _ in chunk], np.float64), counts)
        filled = end
    keys, times = np.multiply(keys[:filled], _SPREAD, out=keys[:filled]), times[:filled]
    order = np.argsort(keys, kind="stable")  # equal keys stay oldest first
    keys = keys[order]
    times = times[order]
    del order
    last = np.append(np.not_equal(keys[1:], keys[:-1]), True)
    return Run(keys, times) if last.all() else Run(keys[last], times[last])


def _grown(array: npt.NDArray[_Item], filled: int, size: int) -> npt.NDArray[_Item]:
    grown = np.empty(max(size, 2 * len(array)), array.dtype)
    grown[:filled] = array[:filled]
    return grown


def ids_to_blob(ids: IdArray) -> bytes:
    """The bytes stored for a charge's IDs (STORED_ID each)."""
    return ids.astype(STORED_ID).tobytes()


def distinct_sorted(ids: Sequence[int]) -> IdArray:
    """An answer batch's tweet IDs, each once, sorted, as the index takes them."""
    if len(ids) < SMALL_BATCH:  # Python's set and sort beat numpy's calls here
        return np.array(sorted(set(ids)), dtype=np.int64)
    array = np.array(ids, dtype=np.int64)
    array.sort()
    first = np.empty(len(array), dtype=bool)
    first[0] = True
    np.not_equal(array[1:], array[:-1], out=first[1:])
    return array[first]
