"""Driving the engine for an evaluation: the worker's own scoring path, in batches.

Each task is one (content, policy) prompt. It goes through ``classify.score_jobs``, the
code the worker runs, so prompts, truncation and retries are the production ones.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from ...catalog import Entry
from ...engine import Classifier, Score
from ...events import ContentEvent
from ...prompts import Overlong
from ...scoring.classify import Job, score_jobs

Advance = Callable[[int], None]


@dataclass(frozen=True)
class Task:
    key: Hashable
    content: str
    entry: Entry


@dataclass(frozen=True)
class Failure:
    """A prompt the worker would dead-letter (content too long, engine request failed)."""

    kind: str
    reason: str


async def run_tasks(
    classifier: Classifier,
    tasks: Sequence[Task],
    overlong: Overlong,
    max_retries: int,
    batch_size: int = 256,
    advance: Advance | None = None,
) -> dict[Hashable, float | Failure]:
    """P("1") per task key, or why it has none. Raises EngineError if the engine dies."""
    results: dict[Hashable, float | Failure] = {}
    counting = _Counting(classifier, advance)
    for start in range(0, len(tasks), batch_size):
        batch = tasks[start : start + batch_size]
        jobs = {
            Job(ContentEvent(id=f"eval-{start + i}", content=t.content), [t.entry]): t
            for i, t in enumerate(batch)
        }
        counting.counted = 0
        for scored in await score_jobs(counting, list(jobs), overlong, max_retries):
            task = jobs[scored.job]
            if scored.error is not None:
                results[task.key] = Failure(scored.error.kind, scored.error.reason)
            else:
                assert scored.scores is not None
                results[task.key] = scored.scores[0].p_yes
        if advance is not None:
            advance(len(batch) - counting.counted)  # prompts that failed or were never sent
    return results


class _Counting:
    """The classifier, reporting each answered prompt so progress moves per item."""

    def __init__(self, inner: Classifier, advance: Advance | None) -> None:
        self.inner = inner
        self.advance = advance
        self.counted = 0
        self.model_name = inner.model_name
        self.max_model_len = inner.max_model_len
        self.tokenizer = inner.tokenizer

    async def score(self, prompt_token_ids: list[int]) -> Score:
        score = await self.inner.score(prompt_token_ids)
        if self.advance is not None:
            self.counted += 1
            self.advance(1)
        return score

    def close(self) -> None:
        self.inner.close()
