"""Scoring a batch of events against their policies: the core the worker, CLI and eval share."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from ..catalog import Catalog, Entry
from ..engine import Classifier, Score
from ..errors import DeadLetterKind, Rejected, TransientError
from ..events import BadEvent, ContentEvent, Latency, PolicyVerdict, Source, Verdict, decode_event
from ..policies import PolicyError
from ..prompts import Overlong, PromptError, assemble, tokenize_contents
from ..retry import Backoff, retriable, retry
from ..routing import confidence, route
from .verdict_cache import VerdictCache, cache_key

log = structlog.get_logger("worker.classify")


@dataclass(eq=False)
class Job:
    event: ContentEvent
    entries: list[Entry]
    received: float = field(default_factory=time.monotonic)
    # Shadow policies to score beside production ones: (index into entries, shadow entry).
    shadows: tuple[tuple[int, Entry], ...] = ()

    def scored_entries(self) -> list[Entry]:
        """Every entry that gets a score: production ones, then shadows."""
        return [*self.entries, *(entry for _, entry in self.shadows)]


def make_job(value: bytes | None, catalog: Catalog, policy_ids: list[str] | None = None) -> Job:
    """One record value decoded and its policies resolved; raises BadEvent saying why not."""
    event = decode_event(value)
    try:
        entries = catalog.resolve(policy_ids or event.policies)
    except PolicyError as exc:
        raise BadEvent(DeadLetterKind.UNKNOWN_POLICY, str(exc)) from None
    return Job(event, entries)


@dataclass(frozen=True)
class Scored:
    """One job's scores per entry (in entry order), or the reason it could not be scored."""

    job: Job
    scores: list[Score] | None = None
    error: Rejected | None = None
    started: float = 0.0
    finished: float = 0.0
    shadow_scores: list[Score] = field(default_factory=list)  # in job.shadows order
    # Per scored entry (production, then shadows): the score came without an engine request
    # of its own (the verdict cache, or a copy earlier in the same batch). Empty: none did.
    cached: tuple[bool, ...] = ()
    saved_tokens: int = 0  # prompt tokens past the policy prefix that the cache spared


@dataclass
class _Plan:
    """Which engine requests a batch needs, and which (job, entry) each answer serves."""

    prompts: dict[Any, tuple[str, list[int]]] = field(default_factory=dict)  # key: policy, ids
    owners: dict[Any, Job] = field(default_factory=dict)  # key: the job it is sent for
    wanted: dict[Job, list[Any]] = field(default_factory=dict)  # job: key per scored entry
    hits: dict[Any, Score] = field(default_factory=dict)  # key: score from the cache
    errors: list[Scored] = field(default_factory=list)


async def score_jobs(
    classifier: Classifier,
    jobs: Sequence[Job],
    overlong: Overlong,
    max_retries: int,
    cache: VerdictCache | None = None,
) -> list[Scored]:
    """Score every (job, policy) pair concurrently. Raises EngineDead when the engine dies.

    With a cache, pairs scored before are answered from it and copies within the batch share
    one engine request; without one, every pair is its own request.
    """
    plan = await _plan(classifier, jobs, overlong, cache)
    # Prompts of one policy go in together, so they meet that policy's cached prefix.
    keys = sorted(plan.prompts, key=lambda k: plan.prompts[k][0])
    started = time.monotonic()
    answers = await asyncio.gather(
        *(_score_with_retry(classifier, plan.prompts[k][1], max_retries) for k in keys),
        return_exceptions=True,
    )
    finished = time.monotonic()
    fresh = dict(zip(keys, answers, strict=True))
    if cache is not None:
        for key, answer in fresh.items():
            if isinstance(answer, Score):
                cache.put(key, answer)
    return plan.errors + [
        _collect(job, keys_of, plan, fresh, started, finished)
        for job, keys_of in plan.wanted.items()
    ]


async def _plan(
    classifier: Classifier, jobs: Sequence[Job], overlong: Overlong, cache: VerdictCache | None
) -> _Plan:
    plan = _Plan()
    model = classifier.model_name
    keys_of: dict[Job, list[Any]] = {}
    for job in jobs:
        entries = job.scored_entries()
        if cache is None:  # a key of its own: nothing is shared
            keys_of[job] = [(job, n) for n in range(len(entries))]
            continue
        keys = [cache_key(model, e.policy.version, job.event.content) for e in entries]
        keys_of[job] = keys
        for key in keys:
            if key not in plan.hits and (score := cache.get(key)) is not None:
                plan.hits[key] = score
    # Only content with a pair to score is tokenized: a job answered whole by the cache
    # costs a hash per pair.
    todo = [job for job in jobs if any(k not in plan.hits for k in keys_of[job])]
    contents = [job.event.content for job in todo]
    token_ids = await asyncio.to_thread(tokenize_contents, classifier.tokenizer, contents)
    ids_of = dict(zip(todo, token_ids, strict=True))
    for job in jobs:
        try:
            _add_prompts(plan, job, keys_of[job], ids_of.get(job), overlong)
        except PromptError as exc:
            plan.errors.append(Scored(job, error=exc))
    return plan


def _add_prompts(
    plan: _Plan, job: Job, keys: list[Any], content_ids: list[int] | None, overlong: Overlong
) -> None:
    """Register the job's prompts that neither the cache nor an earlier copy answers."""
    new = {}
    for entry, key in zip(job.scored_entries(), keys, strict=True):
        if key in plan.hits or key in plan.prompts or key in new:
            continue
        assert content_ids is not None  # tokenized: this job has a pair to score
        new[key] = (entry.policy.id, assemble(entry.prompt, content_ids, overlong))
    plan.prompts.update(new)  # only once every prompt of the job could be built
    plan.owners.update(dict.fromkeys(new, job))
    plan.wanted[job] = keys


def _collect(
    job: Job,
    keys: list[Any],
    plan: _Plan,
    fresh: dict[Any, Score | BaseException],
    started: float,
    finished: float,
) -> Scored:
    scores, cached, saved = [], [], 0
    for entry, key in zip(job.scored_entries(), keys, strict=True):
        answer = plan.hits[key] if key in plan.hits else fresh[key]
        if isinstance(answer, TransientError):  # retries spent: this job alone fails
            error = Rejected(DeadLetterKind.ENGINE_ERROR, str(answer))
            return Scored(job, error=error, started=started, finished=finished)
        if isinstance(answer, BaseException):
            raise answer
        spared = key in plan.hits or plan.owners[key] is not job
        cached.append(spared)
        if spared:
            saved += max(0, answer.prompt_tokens - len(entry.prompt.prefix))
        scores.append(answer)
    count = len(job.entries)
    return Scored(
        job,
        scores=scores[:count],
        started=started,
        finished=finished,
        shadow_scores=scores[count:],
        cached=tuple(cached) if any(cached) else (),
        saved_tokens=saved,
    )


async def _score_with_retry(classifier: Classifier, prompt: list[int], retries: int) -> Score:
    def on_retry(exc: Exception, delay: float) -> None:
        log.warning("engine request failed; retrying", retry_in_s=delay, error=str(exc))

    return await retry(
        lambda: classifier.score(prompt),
        lambda: Backoff(math.inf, math.inf, first_s=0.1, tries=retries),
        retriable,
        on_retry,
    )


def build_verdict(scored: Scored, model: str, source: Source) -> Verdict:
    """Labels, confidences and the route for one scored job.

    Built with ``model_construct``: every value comes from validated input or from this
    code, so validating it again per item would only cost time (a quarter of the verdict's).
    """
    job = scored.job
    assert scored.scores is not None
    per_policy = []
    uncertain = []
    cached = scored.cached[: len(job.entries)] or (False,) * len(job.entries)
    for entry, score, from_cache in zip(job.entries, scored.scores, cached, strict=True):
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
                cached=from_cache,
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
