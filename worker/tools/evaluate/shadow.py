"""``eval shadow``: what a shadow policy would change, read from its records.

Records come from the shadow topic (read from the beginning to its current end, outside any
consumer group) or from a JSONL file of the same records. Redelivered records are counted
once: a record is one (event id, production version, shadow version).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from ...config import KafkaSettings
from ...errors import WorkerError
from ...kafka import client_options
from ...scoring.shadow import ShadowRecord

TOPIC_PREFIX = "kafka:"


class ShadowReadError(WorkerError):
    """Shadow records that cannot be read; the message says where and why."""


@dataclass
class PairReport:
    """One production policy version against one shadow policy version."""

    production: str
    production_version: str
    shadow: str
    shadow_version: str
    events: int = 0
    flips: dict[str, int] = field(default_factory=lambda: {"0->1": 0, "1->0": 0})
    examples: dict[str, list[ShadowRecord]] = field(
        default_factory=lambda: {"0->1": [], "1->0": []}
    )

    @property
    def changed(self) -> int:
        return sum(self.flips.values())

    @property
    def agreement(self) -> float:
        return 1 - self.changed / self.events if self.events else 1.0

    def to_json(self) -> dict[str, object]:
        return {
            "production_policy": self.production,
            "production_version": self.production_version,
            "shadow_policy": self.shadow,
            "shadow_version": self.shadow_version,
            "events": self.events,
            "changed": self.changed,
            "agreement": round(self.agreement, 6),
            "flips": self.flips,
            "examples": {
                kind: [r.model_dump(mode="json") for r in records]
                for kind, records in self.examples.items()
            },
        }


def compare(records: Iterable[ShadowRecord], examples: int = 5) -> list[PairReport]:
    """Decisions the shadow would change, per policy-version pair, with examples of each flip."""
    reports: dict[tuple[str, str, str, str], PairReport] = {}
    seen: set[tuple[str, str, str, str]] = set()
    for record in records:
        once = (record.id, record.production_version, record.shadow_policy, record.shadow_version)
        if once in seen:
            continue
        seen.add(once)
        pair = (
            record.production_policy,
            record.production_version,
            record.shadow_policy,
            record.shadow_version,
        )
        report = reports.setdefault(pair, PairReport(*pair))
        report.events += 1
        if record.flip != "none":
            report.flips[record.flip] += 1
            if len(report.examples[record.flip]) < examples:
                report.examples[record.flip].append(record)
    return list(reports.values())


def render(reports: Sequence[PairReport]) -> str:
    """The comparison as plain text, one block per pair."""
    if not reports:
        return "no shadow records found\n"
    lines = []
    for r in reports:
        lines += [
            f"{r.shadow} ({r.shadow_version[:12]}) shadowing "
            f"{r.production} ({r.production_version[:12]})",
            f"  events {r.events}, decisions changed {r.changed} "
            f"({1 - r.agreement:.2%}), agreement {r.agreement:.2%}",
            f"  flips 0->1 (would flag): {r.flips['0->1']}; 1->0 (would clear): {r.flips['1->0']}",
        ]
        for kind, examples in r.examples.items():
            for ex in examples:
                lines.append(
                    f"    {kind} {ex.id}: production {ex.production_score:.3f}, "
                    f"shadow {ex.shadow_score:.3f} ({ex.source.topic}[{ex.source.partition}]"
                    f"@{ex.source.offset})"
                )
        lines.append("")
    return "\n".join(lines)


def parse_records(lines: Iterable[bytes | str], where: str) -> list[ShadowRecord]:
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(ShadowRecord.model_validate(orjson.loads(line)))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            first = str(exc).splitlines()[0]
            raise ShadowReadError(f"{where}:{number}: not a shadow record: {first}") from None
    return records


def read_file(path: Path) -> list[ShadowRecord]:
    if not path.is_file():
        raise ShadowReadError(f"shadow record file {path} does not exist")
    with path.open("rb") as lines:
        return parse_records(lines, str(path))


async def read_topic(
    kafka: KafkaSettings, topic: str, timeout_s: float = 30.0
) -> list[ShadowRecord]:
    """Every record on ``topic`` up to its end when reading began."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_options(kafka))
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ShadowReadError(f"topic {topic} does not exist on {kafka.bootstrap_servers}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        lines: list[bytes] = []
        while await _behind(consumer, ends):
            batch = await consumer.getmany(timeout_ms=int(timeout_s * 1000))
            if not batch:
                raise ShadowReadError(f"topic {topic}: no records within {timeout_s:.0f} s")
            lines += [r.value or b"" for part in batch.values() for r in part]
        return parse_records(lines, f"topic {topic}")
    finally:
        await consumer.stop()


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


async def read_source(kafka: KafkaSettings, source: str) -> list[ShadowRecord]:
    """``kafka:TOPIC`` reads a topic with the configured connection; anything else a file."""
    if source.startswith(TOPIC_PREFIX):
        return await read_topic(kafka, source.removeprefix(TOPIC_PREFIX))
    return read_file(Path(source))


def compare_to_files(kafka: KafkaSettings, source: str, out: Path) -> str:
    """Compare the records at ``source``; write ``shadow-comparison.json`` to ``out`` and
    return the rendered report. Raises ShadowReadError."""
    reports = compare(asyncio.run(read_source(kafka, source)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "shadow-comparison.json").write_bytes(
        orjson.dumps([r.to_json() for r in reports], option=orjson.OPT_INDENT_2)
    )
    return render(reports)
