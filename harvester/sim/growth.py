"""Attention that grows: each answer about an output after its first finds more of it.

The universe builds an output the same way every time (a benchmark re-fetches the same
bytes), so a refresh against a steady simulator stores the same score again and "whose
score rose" is always 0. `harvester simulate` grows attention instead (issue 24): the
Nth answer about an output (counted by its Altmetric ID, whichever identifier asked,
fetch or counts call alike) carries a score N quarters higher, plus N, and its last
day's, week's and month's history with it, so a score history shows real rises. Only
the score moves: tweets and counts stay the universe's, as the tweet quota expects.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

Json = dict[str, Any]

GROWTH_PER_ANSWER = 0.25  # of the first answer's score, per answer after it
RECENT = ("1d", "2d", "3d", "4d", "5d", "6d", "1w", "1m", "at")


class Attention:
    """Counts the answers given about each output and grows each one's score."""

    def __init__(self) -> None:
        self._answers: Counter[object] = Counter()
        self._lock = threading.Lock()  # a heavy output is answered on a thread

    def __call__(self, output: Json) -> Json:
        with self._lock:
            times = self._answers[output.get("altmetric_id")]
            self._answers[output.get("altmetric_id")] += 1
        return grown(output, times)


def grown(output: Json, times: int) -> Json:
    """`output` (a fresh copy from `universe.output_for`) as it is `times` answers on."""
    if times <= 0 or not isinstance(output.get("score"), int | float):
        return output
    score = round(output["score"] * (1 + GROWTH_PER_ANSWER * times) + times, 3)
    output["score"] = score
    section = output.get("altmetric_score")
    if isinstance(section, dict):
        history = dict(section.get("score_history") or {})
        for span in RECENT:
            if span in history:
                history[span] = score
        output["altmetric_score"] = {**section, "score": score, "score_history": history}
    return output
