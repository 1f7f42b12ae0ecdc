"""The hash phase: the worker on unique content without hash banks, then with banks that
hold ``known_share`` of the texts, so those events are decided without the engine.

Each known text is banked (as ``text_sha256``, the worker's own text key) at the label the
model gives its event: known bad (label 1) or known good (label 0), for all the event's
policies. With the test model the labels are known, so the banked run's verdicts are still
checked; with another model every known text is banked as known bad.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Protocol

from ...hashbanks.signals import text_key
from ...prompts import Tokenizer
from .config import BenchConfig
from .stats import ratio, saturated_rate
from .workload import Workload, expected_labels, is_test_model, load_workload


class SystemBench(Protocol):
    async def measure(self, kind: str, count: int, **options: Any) -> dict[str, Any]: ...


async def hash_phase(
    bench: SystemBench, config: BenchConfig, tokenizer: Tokenizer
) -> dict[str, Any]:
    """Both runs on the same texts (the workload is rebuilt from the seed), so the rate
    and the engine's prompts differ only by what the banks decide."""
    none = await bench.measure("worker", config.events, name="hash-none")
    workload = load_workload(config, tokenizer, config.events, "hash-known-sat")
    labels = expected_labels(workload, tokenizer) if is_test_model(config.model) else None
    known = write_banks(config.workdir / "banks", workload, config.known_share, config.seed, labels)
    banked = await bench.measure(
        "worker",
        config.events,
        name="hash-known",
        settings={"banks": {"dir": str(config.workdir / "banks"), "watch": False}},
        workload=workload,
    )
    return {
        "known_share": config.known_share,
        "known_events": known,
        "none": none,
        "known": banked,
        "known_over_none": ratio(saturated_rate(banked), saturated_rate(none)),
    }


def write_banks(
    directory: Path,
    workload: Workload,
    share: float,
    seed: int,
    labels: dict[str, int] | None,
) -> int:
    """Bank ``share`` of the workload's events (drawn with ``seed``) in ``directory``, each at
    its label in ``labels`` (None: all known bad); the number banked."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    events = list(zip(workload.events, workload.contents, strict=True))
    chosen = random.Random(seed).sample(events, round(share * len(events)))
    policies = sorted({policy for event, _ in events for policy in event.policies})
    for label, name in ((1, "known-bad"), (0, "known-good")):
        lines = [
            f"text_sha256 {text_key(content)}\n"
            for event, content in chosen
            if (labels[event.id] if labels is not None else 1) == label
        ]
        if lines:
            (directory / f"{name}.yaml").write_text(
                f"policies: [{', '.join(policies)}]\nlabel: {label}\n"
            )
            (directory / f"{name}.txt").write_text("".join(lines))
    return len(chosen)
