"""Driving the engine for an evaluation: the worker's own scoring path, in batches.

Each task is one (content, policy) prompt, with the row's media when it has some. It goes
through ``classify.score_jobs``, the code the worker runs, so prompts, truncation and
retries are the production ones. Media go through the worker's media step first (the
guarded fetcher for URLs, the same limits and decoders for files), a batch at a time, so
that only one batch's decoded frames are held at once. With hash banks loaded, the step
also computes each item's bank signals; ``MediaHashes`` keeps them per row's media, so the
bank check sees the same parts the worker's hash pass would.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...catalog import Entry
from ...config import MediaSettings
from ...engine import Classifier, Score
from ...errors import DeadLetterKind, Rejected
from ...events import ContentEvent
from ...hashbanks.signals import NO_SIGNALS, MediaSignals
from ...media import FetchedMedia, MediaRef
from ...media.step import MediaStep
from ...prompts import Overlong
from ...scoring.classify import Job, score_jobs
from .media_rows import MediaSpec

Advance = Callable[[int], None]


@dataclass(frozen=True)
class Task:
    key: Hashable
    content: str | None  # None: media alone
    entry: Entry
    media: tuple[MediaSpec, ...] = ()


@dataclass
class MediaHashes:
    """The signal types the banks hold (``wanted``), and the signals computed for each
    row's media (``seen``, by the row's media specs; rows whose media failed are absent)."""

    wanted: frozenset[str]
    seen: dict[tuple[MediaSpec, ...], list[MediaSignals]] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    """A prompt the worker would dead-letter (content too long, media refused, engine
    request failed)."""

    kind: str
    reason: str


async def run_tasks(
    classifier: Classifier,
    tasks: Sequence[Task],
    overlong: Overlong,
    max_retries: int,
    batch_size: int = 256,
    advance: Advance | None = None,
    media: MediaSettings | None = None,
    hashes: MediaHashes | None = None,
) -> dict[Hashable, float | Failure]:
    """P("1") per task key, or why it has none. Raises EngineError if the engine dies.
    ``hashes``: the banks' signal types to compute for rows' media, filled as they are."""
    results: dict[Hashable, float | Failure] = {}
    counting = _Counting(classifier, advance)
    hashes = hashes or MediaHashes(frozenset())
    step = None
    if any(t.media for t in tasks):
        step = MediaStep(media or MediaSettings(), wanted=lambda: hashes.wanted)
    try:
        for start in range(0, len(tasks), batch_size):
            batch = tasks[start : start + batch_size]
            jobs = await _jobs(batch, start, step, results, hashes)
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
    finally:
        if step is not None:
            step.close()
    return results


async def _jobs(
    batch: Sequence[Task],
    start: int,
    step: MediaStep | None,
    results: dict[Hashable, float | Failure],
    hashes: MediaHashes,
) -> dict[Job, Task]:
    """The batch's jobs, their media fetched and decoded; a task whose media fail gets its
    Failure in ``results`` instead. A row's media are prepared once for all its tasks."""
    prepared: dict[tuple[MediaSpec, ...], list[_Ready] | Failure] = {}
    jobs = {}
    for i, task in enumerate(batch):
        if task.media and task.media not in prepared:
            assert step is not None
            prepared[task.media] = await _prepare(step, task.media)
        got = prepared.get(task.media, [])
        if isinstance(got, Failure):
            results[task.key] = got
            continue
        if got:
            hashes.seen[task.media] = [m.fetched.signals or NO_SIGNALS for m in got]
        refs = [m.ref for m in got]
        event = ContentEvent(id=f"eval-{start + i}", content=task.content, media=refs)
        job = Job(event, [task.entry], media=[m.fetched for m in got])
        jobs[job] = task
    return jobs


@dataclass(frozen=True)
class _Ready:
    ref: MediaRef
    fetched: FetchedMedia


async def _prepare(step: MediaStep, specs: tuple[MediaSpec, ...]) -> list[_Ready] | Failure:
    try:
        refs = [spec.ref() for spec in specs]
    except OSError as exc:
        return Failure(DeadLetterKind.MEDIA_REJECTED, f"unreadable: {exc}")
    try:
        media = await step.prepare(refs)
    except Rejected as exc:
        return Failure(exc.kind, exc.reason)
    step.release(media)  # the bound on bytes held is the worker's intake's, not eval's
    return [_Ready(ref, item) for ref, item in zip(refs, media, strict=True)]


class _Counting:
    """The classifier, reporting each answered prompt so progress moves per item."""

    def __init__(self, inner: Classifier, advance: Advance | None) -> None:
        self.inner = inner
        self.advance = advance
        self.counted = 0
        self.model_name = inner.model_name
        self.max_model_len = inner.max_model_len
        self.tokenizer = inner.tokenizer
        self.accepts_media = bool(getattr(inner, "accepts_media", False))

    async def score(self, prompt_token_ids: list[int], media: Sequence[Any] = ()) -> Score:
        inner = self.inner
        score = await (
            inner.score(prompt_token_ids, media=media) if media else inner.score(prompt_token_ids)
        )
        if self.advance is not None:
            self.counted += 1
            self.advance(1)
        return score

    def close(self) -> None:
        self.inner.close()
