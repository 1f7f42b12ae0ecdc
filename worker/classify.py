"""Scoring a batch of events against their policies: the core the worker, CLI and eval share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from .catalog import Entry
from .engine import Classifier, EngineError, Score
from .events import BadEvent, ContentEvent, Latency, PolicyVerdict, Source, Verdict
from .prompts import Overlong, PromptError, assemble, tokenize_contents
from .routing import confidence, route

log = structlog.get_logger("worker.classify")


@dataclass(eq=False)
class Job:
    event: ContentEvent
    entries: list[Entry]
    received: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Scored:
    """One job's scores per entry (in entry order), or the reason it could not be scored."""

    job: Job
    scores: list[Score] | None = None
    error: BadEvent | None = None
    started: float = 0.0
    finished: float = 0.0


async def score_jobs(
    classifier: Classifier, jobs: Sequence[Job], overlong: Overlong, max_retries: int
) -> list[Scored]:
    """Score every (job, policy) pair concurrently. Raises EngineError when the engine dies."""
    contents = [job.event.content for job in jobs]
    token_ids = await asyncio.to_thread(tokenize_contents, classifier.tokenizer, contents)
    results: list[Scored] = []
    prompts: list[tuple[Job, int, list[int]]] = []
    for job, content_ids in zip(jobs, token_ids, strict=True):
        try:
            prompts.extend(
                [
                    (job, index, assemble(entry.prompt, content_ids, overlong))
                    for index, entry in enumerate(job.entries)
                ]
            )
        except PromptError as exc:
            results.append(Scored(job, error=BadEvent(exc.kind, exc.reason)))
    # Prompts of one policy go in together, so they meet that policy's cached prefix.
    prompts.sort(key=lambda p: p[0].entries[p[1]].policy.id)
    started = time.monotonic()
    answers = await asyncio.gather(
        *(_score_with_retry(classifier, prompt, max_retries) for _, _, prompt in prompts),
        return_exceptions=True,
    )
    finished = time.monotonic()
    return results + _collect(prompts, answers, started, finished)


def _collect(
    prompts: list[tuple[Job, int, list[int]]],
    answers: list[Score | BaseException],
    started: float,
    finished: float,
) -> list[Scored]:
    scores: dict[Job, dict[int, Score]] = {}
    failed: dict[Job, BaseException] = {}
    for (job, index, _), answer in zip(prompts, answers, strict=True):
        if isinstance(answer, EngineError) and not answer.fatal:
            failed[job] = answer
        elif isinstance(answer, BaseException):
            raise answer
        else:
            scores.setdefault(job, {})[index] = answer
    out = []
    for job in dict.fromkeys(p[0] for p in prompts):
        if job in failed:
            error = BadEvent("engine_error", str(failed[job]))
            out.append(Scored(job, error=error, started=started, finished=finished))
        else:
            ordered = [scores[job][i] for i in range(len(job.entries))]
            out.append(Scored(job, scores=ordered, started=started, finished=finished))
    return out


async def _score_with_retry(classifier: Classifier, prompt: list[int], retries: int) -> Score:
    for attempt in range(retries + 1):
        try:
            return await classifier.score(prompt)
        except EngineError as exc:
            if exc.fatal or attempt == retries:
                raise
            log.warning("engine request failed; retrying", attempt=attempt + 1, error=str(exc))
            await asyncio.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")


def build_verdict(scored: Scored, model: str, source: Source) -> Verdict:
    """Labels, confidences and the route for one scored job.

    Built with ``model_construct``: every value comes from validated input or from this
    code, so validating it again per item would only cost time (a quarter of the verdict's).
    """
    job = scored.job
    assert scored.scores is not None
    per_policy = []
    uncertain = []
    for entry, score in zip(job.entries, scored.scores, strict=True):
        p_yes = float(score.p_yes)
        label = entry.thresholds.label(p_yes)
        uncertain.append(entry.thresholds.uncertain(p_yes))
        per_policy.append(
            PolicyVerdict.model_construct(
                policy=entry.policy.id,
                policy_version=entry.policy.version,
                label=label,
                score=p_yes,
                confidence=confidence(p_yes, label),
            )
        )
    now = time.monotonic()
    return Verdict.model_construct(
        id=job.event.id,
        label=max(v.label for v in per_policy),
        route=route(uncertain),
        verdicts=per_policy,
        model=model,
        source=source,
        metadata=job.event.metadata,
        latency_ms=Latency.model_construct(
            queue=_ms(scored.started - job.received),
            inference=_ms(scored.finished - scored.started),
            total=_ms(now - job.received),
        ),
        classified_at=datetime.now(UTC),
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
