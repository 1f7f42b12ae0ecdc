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
from ..events import (
    BadEvent,
    ContentEvent,
    HashMatch,
    Latency,
    MediaSeen,
    PolicyVerdict,
    Source,
    Verdict,
    decode_event,
)
from ..hashbanks import NO_SIGNALS, BankSet, Decision, Match, decide_parts
from ..media import FetchedMedia, MediaRejected
from ..policies import PolicyError
from ..prompts import Images, Overlong, PromptError, assemble, media_suffix, tokenize_contents
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
    matches: tuple[Match, ...] = ()  # the hash banks that hold this content
    decided: dict[str, Decision] = field(default_factory=dict)  # by policy id, by the banks
    # The event's media, fetched and decoded (the media step fills it before batching).
    media: list[FetchedMedia] = field(default_factory=list)

    def scored_entries(self) -> list[Entry]:
        """Every entry the engine (or the verdict cache) scores: production ones the banks
        did not decide, then shadows."""
        production = [e for e in self.entries if e.policy.id not in self.decided]
        return [*production, *(entry for _, entry in self.shadows)]

    def units(self) -> list[FetchedMedia | None]:
        """What one policy's score is made of: one prompt per media item (the policy's score
        is their highest), or the text alone (None)."""
        return list(self.media) or [None]

    def text(self, unit: FetchedMedia | None) -> str:
        return self.event.text(unit.kind if unit is not None else None)


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
    """One job's scores per entry (in entry order; None where a bank decided), or the
    reason it could not be scored."""

    job: Job
    scores: list[Score | None] | None = None
    error: Rejected | None = None
    started: float = 0.0
    finished: float = 0.0
    shadow_scores: list[Score] = field(default_factory=list)  # in job.shadows order
    # Per entry, then per shadow: the score came without an engine request of its own (the
    # verdict cache, or a copy earlier in the same batch). Empty: none did.
    cached: tuple[bool, ...] = ()
    saved_tokens: int = 0  # prompt tokens past the policy prefix that the cache spared


@dataclass
class _Plan:
    """Which engine requests a batch needs, and which (job, entry) each answer serves."""

    # key: policy, ids, and the frames attached (empty for text)
    prompts: dict[Any, tuple[str, list[int], tuple[Any, ...]]] = field(default_factory=dict)
    owners: dict[Any, Job] = field(default_factory=dict)  # key: the job it is sent for
    # job: per scored entry, the keys of its units (one per media item, or one for text)
    wanted: dict[Job, list[tuple[Any, ...]]] = field(default_factory=dict)
    hits: dict[Any, Score] = field(default_factory=dict)  # key: score from the cache
    errors: list[Scored] = field(default_factory=list)


async def score_jobs(
    classifier: Classifier,
    jobs: Sequence[Job],
    overlong: Overlong,
    max_retries: int,
    cache: VerdictCache | None = None,
    banks: BankSet | None = None,
) -> list[Scored]:
    """Score every (job, policy) pair concurrently. Raises EngineDead when the engine dies.

    With banks, the policies they decide are never scored. With a cache, pairs scored before
    are answered from it and copies within the batch share one engine request; without one,
    every pair is its own request.
    """
    if banks is not None:
        hash_pass(banks, jobs)
    plan = await _plan(classifier, jobs, overlong, cache)
    # Prompts of one policy go in together, so they meet that policy's cached prefix.
    keys = sorted(plan.prompts, key=lambda k: plan.prompts[k][0])
    started = time.monotonic()
    answers = await asyncio.gather(
        *(_score_with_retry(classifier, *plan.prompts[k][1:], max_retries) for k in keys),
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


def hash_pass(banks: BankSet, jobs: Sequence[Job]) -> None:
    """classify's first pass: record each job's bank matches and the decisions they make.

    Lookups only: media items carry their signals, computed in the media step's decode
    pool; the batch's PDQ hashes go to the index in one search. A job's policies that a
    bank decides are taken out of what the engine scores, and so are their shadows (a
    draft is compared with a production score; a bank decision has none).
    """
    items = [item for job in jobs for item in job.media]
    found = banks.match_media([item.signals or NO_SIGNALS for item in items])
    of_item = dict(zip(items, found, strict=True))
    for job in jobs:
        # The event's parts: its text (an event of media alone has none), each item.
        parts = [banks.match_text(job.event.content)] if job.event.content else []
        parts += [of_item[item] for item in job.media]
        matches = [match for part in parts for match in part]
        if not matches:
            continue
        job.matches = tuple(matches)
        job.decided = decide_parts(parts, [entry.policy.id for entry in job.entries])
        job.shadows = tuple(
            (index, shadow)
            for index, shadow in job.shadows
            if job.entries[index].policy.id not in job.decided
        )


async def _plan(
    classifier: Classifier, jobs: Sequence[Job], overlong: Overlong, cache: VerdictCache | None
) -> _Plan:
    plan = _Plan()
    model = classifier.model_name
    keys_of: dict[Job, list[tuple[Any, ...]]] = {}
    unfetched = [job for job in jobs if job.event.media and not job.media]
    for job in unfetched:  # never classify "[image]" without the image
        error = MediaRejected("not_fetched", "the event's media was not fetched")
        plan.errors.append(Scored(job, error=error))
    jobs = [job for job in jobs if job not in unfetched]
    for job in jobs:
        entries, units = job.scored_entries(), job.units()
        if cache is None:  # a key of its own: nothing is shared
            keys_of[job] = [
                tuple((job, n, u) for u in range(len(units))) for n in range(len(entries))
            ]
            continue
        keys = [
            tuple(
                cache_key(model, e.policy.version, job.text(u), u.sha256 if u else "")
                for u in units
            )
            for e in entries
        ]
        keys_of[job] = keys
        for key in (k for unit_keys in keys for k in unit_keys):
            if key not in plan.hits and (score := cache.get(key)) is not None:
                plan.hits[key] = score
    # Only content with a pair to score is tokenized: a job answered whole by the cache
    # costs a hash per pair.
    todo = [j for j in jobs if any(k not in plan.hits for ks in keys_of[j] for k in ks)]
    texts = sorted({j.text(u) for j in todo for u in j.units()})
    token_ids = await asyncio.to_thread(tokenize_contents, classifier.tokenizer, texts)
    ids_of = dict(zip(texts, token_ids, strict=True))
    for job in jobs:
        try:
            _add_prompts(plan, classifier, job, keys_of[job], ids_of, overlong)
        except (PromptError, MediaRejected) as exc:
            plan.errors.append(Scored(job, error=exc))
    return plan


def _add_prompts(
    plan: _Plan,
    classifier: Classifier,
    job: Job,
    keys: list[tuple[Any, ...]],
    ids_of: dict[str, list[int]],
    overlong: Overlong,
) -> None:
    """Register the job's prompts that neither the cache nor an earlier copy answers."""
    new = {}
    for entry, unit_keys in zip(job.scored_entries(), keys, strict=True):
        for unit, key in zip(job.units(), unit_keys, strict=True):
            if key in plan.hits or key in plan.prompts or key in new:
                continue
            frames = unit.frames if unit is not None else ()
            suffix = _suffix(classifier, len(frames)) if frames else None
            images = _images(classifier, len(frames)) if frames else None
            ids = assemble(entry.prompt, ids_of[job.text(unit)], overlong, suffix, images)
            new[key] = (entry.policy.id, ids, frames)
    plan.prompts.update(new)  # only once every prompt of the job could be built
    plan.owners.update(dict.fromkeys(new, job))
    plan.wanted[job] = keys


def _suffix(classifier: Classifier, images: int) -> tuple[int, ...]:
    if not getattr(classifier, "accepts_media", False):
        # The remote engine says why its servers take no media; otherwise the model has no
        # vision path.
        why = getattr(classifier, "no_media", None) or "a text-only model"
        raise MediaRejected(
            "model_without_vision",
            f"model {classifier.model_name!r} on this engine does not take images ({why})",
        )
    return media_suffix(classifier.tokenizer, images)


def _images(classifier: Classifier, count: int) -> Images | None:
    """What ``count`` frames take in the engine's prompt; None where the engine cannot say
    (the prompt then goes out unfitted, and the engine refuses one that does not fit)."""
    tokens_each = getattr(classifier, "tokens_per_image", None)
    return Images(count, tokens_each) if tokens_each else None


def _collect(
    job: Job,
    keys: list[tuple[Any, ...]],
    plan: _Plan,
    fresh: dict[Any, Score | BaseException],
    started: float,
    finished: float,
) -> Scored:
    scores: list[Score] = []
    cached: list[bool] = []
    saved = 0
    for entry, unit_keys in zip(job.scored_entries(), keys, strict=True):
        answers = [plan.hits[k] if k in plan.hits else fresh[k] for k in unit_keys]
        for answer in answers:
            if isinstance(answer, TransientError):  # retries spent: this job alone fails
                error = Rejected(DeadLetterKind.ENGINE_ERROR, str(answer))
                return Scored(job, error=error, started=started, finished=finished)
            if isinstance(answer, BaseException):
                raise answer
        spared = [k in plan.hits or plan.owners[k] is not job for k in unit_keys]
        cached.append(all(spared))
        for answer, was_spared in zip(answers, spared, strict=True):
            if was_spared:
                saved += max(0, answer.prompt_tokens - len(entry.prompt.prefix))
        # Several media items: the policy's score is the highest, so any item that meets
        # the policy makes the event meet it.
        scores.append(max(answers, key=lambda a: a.p_yes))
    count = len(job.entries) - len(job.decided)
    production, spared_iter = iter(scores[:count]), iter(cached[:count])
    decided = [entry.policy.id in job.decided for entry in job.entries]
    per_entry = [None if d else next(production) for d in decided]
    cached_per_entry = [False if d else next(spared_iter) for d in decided] + cached[count:]
    return Scored(
        job,
        scores=per_entry,
        started=started,
        finished=finished,
        shadow_scores=scores[count:],
        cached=tuple(cached_per_entry) if any(cached) else (),
        saved_tokens=saved,
    )


async def _score_with_retry(
    classifier: Classifier, prompt: list[int], frames: tuple[Any, ...], retries: int
) -> Score:
    def on_retry(exc: Exception, delay: float) -> None:
        log.warning("engine request failed; retrying", retry_in_s=delay, error=str(exc))

    return await retry(
        lambda: classifier.score(prompt, media=frames) if frames else classifier.score(prompt),
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
        decision = job.decided.get(entry.policy.id)
        if decision is not None:
            uncertain.append(decision.route == "review")
            per_policy.append(_bank_verdict(entry, decision))
            continue
        assert score is not None  # scored: no bank decided this policy
        uncertain.append(entry.thresholds.uncertain(float(score.p_yes)))
        per_policy.append(_model_verdict(entry, score, from_cache))
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
        media=[
            MediaSeen.model_construct(
                where=m.where, kind=m.kind, sha256=m.sha256, frames=len(m.frames)
            )
            for m in job.media
        ],
    )


def _model_verdict(entry: Entry, score: Score, from_cache: bool) -> PolicyVerdict:
    """A policy the model scored: its label by the policy's threshold, and the score."""
    p_yes = float(score.p_yes)
    label = entry.thresholds.label(p_yes)
    return PolicyVerdict.model_construct(
        policy=entry.policy.id,
        policy_version=entry.policy.version,
        label=label,
        score=p_yes,
        confidence=confidence(p_yes, label),
        cached=from_cache,
        source="model",
        match=None,
    )


def _bank_verdict(entry: Entry, decision: Decision) -> PolicyVerdict:
    """A policy a bank decided: its label, and the match instead of a score."""
    match = decision.match
    return PolicyVerdict.model_construct(
        policy=entry.policy.id,
        policy_version=entry.policy.version,
        label=decision.label,
        score=None,
        confidence=None,
        cached=False,
        source="hash_match",
        match=HashMatch.model_construct(
            bank=match.bank.name, signal_type=match.signal_type, distance=match.distance
        ),
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
