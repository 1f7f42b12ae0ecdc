"""The classify command's work: content events as lines in, verdicts as JSON lines out.

Each line is decoded, resolved and scored as the worker does it; a line that has no verdict
is named on stderr and makes the exit code 1.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import typer

from ..app import load_catalog, start_classifier
from ..catalog import Catalog
from ..config import Settings
from ..engine import Classifier
from ..errors import Rejected
from ..events import Source
from ..hashbanks import BankSet
from ..hashbanks.reload import load_for_serving
from ..media.step import MediaStep
from ..preflight import check_policy_ids, compile_policies
from ..scoring.classify import build_verdict, make_job, score_jobs


async def classify_lines(
    settings: Settings, lines: Any, origin: str, policy_ids: list[str] | None
) -> int:
    """Classify every non-blank line with one engine; the exit code. The policies, the ids
    named with -p and the hash banks are checked before the engine starts."""
    catalog = compile_policies(settings)
    check_policy_ids(catalog, policy_ids, "--policy")
    registry = catalog.registry
    banks = await load_for_serving(settings.banks, registry)
    classifier = await start_classifier(settings)
    if banks is not None:  # the first PDQ lookup's compile, once the engine runs
        await asyncio.to_thread(banks.warm)
    # Events with media are fetched and hashed as the worker does.
    media = MediaStep(settings.media, wanted=lambda: banks.signal_types if banks else ())
    failures = 0
    try:
        catalog = load_catalog(settings, classifier)
        for number, line in enumerate(lines, start=1):
            if line.strip():
                raw = line if isinstance(line, bytes) else line.encode()
                failures += not await _classify_line(
                    settings,
                    classifier,
                    media,
                    catalog,
                    raw,
                    Source(topic=origin, partition=0, offset=number - 1),
                    policy_ids,
                    banks,
                )
    finally:
        media.close()
        classifier.close()
    return 1 if failures else 0


async def _classify_line(
    settings: Settings,
    classifier: Classifier,
    media: MediaStep,
    catalog: Catalog,
    raw: bytes,
    source: Source,
    policy_ids: list[str] | None,
    banks: BankSet | None,
) -> bool:
    """Print one line's verdict (policies a bank decided say so), or say on stderr why it
    has none; whether it had one."""
    try:
        job = make_job(raw, catalog, policy_ids)
        if job.event.media:
            job.media = await media.prepare(job.event.media)
    except Rejected as exc:
        typer.echo(f"line {source.offset + 1}: {exc}", err=True)
        return False
    engine = settings.engine
    [scored] = await score_jobs(classifier, [job], engine.overlong, engine.max_retries, banks=banks)
    if scored.error is not None:
        error = scored.error
        typer.echo(f"line {source.offset + 1}: {error.kind}: {error.reason}", err=True)
        return False
    verdict = build_verdict(scored, classifier.model_name, source)
    sys.stdout.buffer.write(verdict.to_json() + b"\n")
    sys.stdout.flush()
    return True
