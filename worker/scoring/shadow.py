"""Shadow policies: drafts scored on live traffic beside the production policy they would replace.

A shadow's score never changes a verdict's label, route or review copy. Each (event, shadow)
pair becomes one record on the shadow topic, saying whether the draft would have decided
differently, so a policy team can see a rewrite's effect before it decides anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import orjson
from pydantic import BaseModel

from ..catalog import Catalog, Entry
from ..events import Source
from .classify import Scored

Flip = Literal["none", "0->1", "1->0"]


class ShadowRecord(BaseModel):
    """One event scored by a production policy and by its shadow (key = event id)."""

    id: str
    production_policy: str
    production_version: str
    production_score: float
    production_label: Literal[0, 1]
    shadow_policy: str
    shadow_version: str
    shadow_score: float
    shadow_label: Literal[0, 1]
    disagree: bool
    flip: Flip  # production label -> shadow label, when they differ
    model: str
    source: Source
    classified_at: datetime

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


def sampled(event_id: str, share: float) -> bool:
    """Whether this event is in the shadowed share: a hash of its id, so reruns agree."""
    if share >= 1:
        return True
    if share <= 0:
        return False
    digest = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * 2**64


def shadows_for(
    catalog: Catalog, entries: Sequence[Entry], event_id: str, share: float
) -> tuple[tuple[int, Entry], ...]:
    """(index of the production entry, shadow entry) for each shadow this event gets."""
    if not catalog.shadows or not sampled(event_id, share):
        return ()
    return tuple(
        (index, shadow)
        for index, entry in enumerate(entries)
        for shadow in catalog.shadows.get(entry.policy.id, ())
    )


def flip(production: int, shadow: int) -> Flip:
    if production == shadow:
        return "none"
    return "0->1" if shadow else "1->0"


def shadow_records(scored: Scored, model: str, source: Source) -> list[ShadowRecord]:
    """The shadow records of one scored event (none when it was not shadowed)."""
    job = scored.job
    assert scored.scores is not None
    now = datetime.now(UTC)
    records = []
    for (index, shadow), shadow_score in zip(job.shadows, scored.shadow_scores, strict=True):
        production = job.entries[index]
        p_prod, p_shadow = float(scored.scores[index].p_yes), float(shadow_score.p_yes)
        label_prod = production.thresholds.label(p_prod)
        label_shadow = shadow.thresholds.label(p_shadow)
        records.append(
            ShadowRecord.model_construct(
                id=job.event.id,
                production_policy=production.policy.id,
                production_version=production.policy.version,
                production_score=p_prod,
                production_label=label_prod,
                shadow_policy=shadow.policy.id,
                shadow_version=shadow.policy.version,
                shadow_score=p_shadow,
                shadow_label=label_shadow,
                disagree=label_prod != label_shadow,
                flip=flip(label_prod, label_shadow),
                model=model,
                source=source,
                classified_at=now,
            )
        )
    return records
