"""``moderation-worker eval dataset``: read the sample, start the engine, score, print, write
the report.

Everything that can be checked without the engine (policies, sample files) is checked first,
so a typo fails in a second rather than after the model has loaded.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from ...catalog import Entry, compile_catalog
from ...config import Settings
from ...engine import Classifier
from ...hashbanks import BankError
from ...hashbanks.reload import load_for_serving
from ...policies import PolicyError, PolicyRegistry
from ...prompts import PromptError
from .bank_check import check_rows
from .console import print_document, progress_bar
from .dataset import DatasetError, parse_pairs, parse_rows, read_lines
from .document import build
from .errors import EvalError
from .evaluation import Evaluation, Plan, Sample, Targets, evaluate, plan_tasks
from .report import write_report
from .runner import MediaHashes
from .selection import Selection, select_policies

ClassifierFactory = Callable[[Settings], Awaitable[Classifier]]


@dataclass(frozen=True)
class EvalRequest:
    dataset: Path | None
    policy: str | None
    pairs: Path | None
    compare: str | None
    out: Path
    targets: Targets


async def run_eval(
    settings: Settings,
    request: EvalRequest,
    classifier_factory: ClassifierFactory,
    out: Console,
    err: Console,
    preflight: Callable[[Settings, Selection, Sample], None] | None = None,
) -> int:
    """Exit code: 0, or 1 when some rows could not be used (they are listed). Raises EvalError.

    ``preflight`` runs the checks that need only the tokenizer before the engine starts."""
    selection, sample = prepare(settings, request)
    if preflight is not None:
        preflight(settings, selection, sample)
    # vLLM logs to stdout unless told otherwise; here stdout carries the results.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    classifier = await classifier_factory(settings)
    try:
        evaluation = await evaluate_sample(settings, request, classifier, selection, sample, err)
    finally:
        classifier.close()
    print_document(out, build(evaluation))
    _write(evaluation, request.out, out)
    return 1 if evaluation.bad_rows else 0


async def evaluate_sample(
    settings: Settings,
    request: EvalRequest,
    classifier: Classifier,
    selection: Selection,
    sample: Sample,
    err: Console,
) -> Evaluation:
    """Score a prepared sample on a started classifier, with a progress bar on ``err``."""
    plan = _plan(settings, classifier, selection, sample, request.targets)
    engine = settings.engine
    try:
        banks = await load_for_serving(settings.banks, selection.registry)
    except BankError as exc:
        raise EvalError(str(exc)) from None
    hashes = MediaHashes(banks.signal_types if banks is not None else frozenset())
    with progress_bar(err, total=len(plan_tasks(plan))) as advance:
        result = await evaluate(
            classifier, plan, engine.overlong, engine.max_retries, advance, settings.media, hashes
        )
    if banks is None:
        return result
    return replace(result, bank_checks=check_rows(sample.rows, banks, hashes.seen))


def prepare(settings: Settings, request: EvalRequest) -> tuple[Selection, Sample]:
    if request.dataset is None and request.pairs is None:
        raise EvalError("nothing to evaluate: pass DATASET and/or --contrastive")
    try:
        selection = select_policies(settings.policies.dir, request.policy, request.compare)
    except PolicyError as exc:
        raise EvalError(str(exc)) from None
    sample = read_sample(request, {p.id for p in selection.registry}, selection.primary)
    if not sample.rows and not sample.pairs:
        reasons = "; ".join(str(b) for b in sample.bad_rows[:5]) or "the files hold no rows"
        raise EvalError(f"no usable rows: {reasons}")
    return selection, sample


def read_sample(request: EvalRequest, known: set[str], default_policy: str | None) -> Sample:
    rows, pairs, bad = [], [], []
    rows_source = str(request.dataset or "dataset")
    pairs_source = str(request.pairs or "pairs")
    try:
        if request.dataset is not None:
            lines = read_lines(request.dataset)
            base = request.dataset.parent
            rows, bad_rows = parse_rows(lines, known, default_policy, rows_source, base)
            bad += bad_rows
        if request.pairs is not None:
            pairs, bad_pairs = parse_pairs(read_lines(request.pairs), known, pairs_source)
            bad += bad_pairs
    except DatasetError as exc:
        raise EvalError(str(exc)) from None
    return Sample(rows, pairs, bad, rows_source, pairs_source)


def _plan(
    settings: Settings,
    classifier: Classifier,
    selection: Selection,
    sample: Sample,
    targets: Targets,
) -> Plan:
    registry = used_policies(selection, sample)
    try:
        catalog = compile_catalog(
            registry, classifier.tokenizer, classifier.max_model_len, settings.routing
        )
        other = _compile_one(settings, classifier, selection) if selection.other else None
    except (PromptError, PolicyError) as exc:
        raise EvalError(str(exc)) from None
    return Plan(catalog, sample, targets, selection.primary, other)


def used_policies(selection: Selection, sample: Sample) -> PolicyRegistry:
    """Only the policies the sample names: an unrelated policy too long for this model's
    context must not stop the evaluation of the others."""
    used = {r.policy for r in sample.rows} | {selection.primary or ""}
    used |= {p for pair in sample.pairs for p in (pair.policy_pos, pair.policy_neg)}
    return PolicyRegistry(p for p in selection.registry if p.id in used)


def check_lengths(settings: Settings, selection: Selection, sample: Sample) -> None:
    """The policies the evaluation uses compiled with the tokenizer alone: one too long for
    the model, or a tokenizer that cannot load, fails before the engine starts."""
    from ...preflight import compile_policies

    try:
        compile_policies(settings, used_policies(selection, sample))
        if selection.other is not None:
            compile_policies(settings, PolicyRegistry([selection.other]))
    except (PromptError, PolicyError) as exc:
        raise EvalError(str(exc)) from None


def _compile_one(settings: Settings, classifier: Classifier, selection: Selection) -> Entry:
    assert selection.other is not None
    registry = PolicyRegistry([selection.other])
    catalog = compile_catalog(
        registry, classifier.tokenizer, classifier.max_model_len, settings.routing
    )
    return catalog.entries[selection.other.id]


def _write(evaluation: Evaluation, directory: Path, out: Console) -> None:
    try:
        paths = write_report(evaluation, directory)
    except OSError as exc:
        raise EvalError(f"cannot write the report to {directory}: {exc}") from None
    out.print()
    out.print(f"Report written to {directory}: " + ", ".join(p.name for p in paths), markup=False)
