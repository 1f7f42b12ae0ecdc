"""Review records as Coop report requests, and what was reported. Pure functions.

Field names follow Coop's Report API (docs/api/report.md in roostorg/coop): ``reporter``
(``kind``, ``typeId``, ``id``), ``reportedAt``, ``reportedForReason`` (``policyId``,
``reason``) and ``reportedItem`` (``id``, ``typeId``, ``data``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..config import CoopSettings


class NotAReviewRecord(ValueError):
    """A review-topic value this adapter cannot turn into reports."""


@dataclass(frozen=True)
class Reported:
    """What a decision on (item, policy) answers: the policy version and why it was in review."""

    policy_version: str
    origin: str


@dataclass(frozen=True)
class Report:
    item: str
    policy: str
    reported: Reported
    body: dict[str, Any]


def reports_for(record: Any, coop: CoopSettings) -> list[Report]:
    """One report per policy under review: every policy of a band item, the sampled ones of an
    audit copy. The item's ``data`` is the event's metadata, which must carry the fields of the
    Coop Item Type (``item_type_id``): the worker does not copy content into its records."""
    try:
        item = record["id"]
        origin = record.get("origin") or "review_band"
        rates = record.get("audit_rates") or {}
        verdicts = {v["policy"]: v for v in record["verdicts"]}
        metadata = record.get("metadata") or {}
        reported_at = record["classified_at"]
    except (KeyError, TypeError, AttributeError) as exc:
        raise NotAReviewRecord(f"not a review record: {type(exc).__name__}: {exc}") from None
    if not isinstance(item, str) or not isinstance(metadata, dict):
        raise NotAReviewRecord("not a review record: id must be a string, metadata an object")
    policies = list(rates) if origin == "audit_sample" else list(verdicts)
    reports = []
    for policy in policies:
        verdict = verdicts.get(policy)
        if verdict is None:
            raise NotAReviewRecord(f"audit_rates names {policy!r}, which has no verdict")
        body = {
            "reporter": {"kind": "user", "typeId": coop.reporter_type_id, "id": coop.reporter_id},
            "reportedAt": reported_at,
            "reportedForReason": {
                "policyId": coop.coop_policy(policy),
                "reason": _reason(origin, verdict, rates.get(policy)),
            },
            "reportedItem": {"id": item, "typeId": coop.item_type_id, "data": metadata},
        }
        reported = Reported(verdict["policy_version"], origin)
        reports.append(Report(item, policy, reported, body))
    return reports


def _reason(origin: str, verdict: dict[str, Any], rate: float | None) -> str:
    if verdict.get("source") == "hash_match":
        match = verdict.get("match") or {}
        why = f"audit sample (rate {rate:g})" if origin == "audit_sample" else "hash bank review"
        return (
            f"moderation-worker {why}: policy {verdict['policy']}, label {verdict['label']} "
            f"from hash bank {match.get('bank')} ({match.get('signal_type')}, distance "
            f"{match.get('distance')})"
        )
    why = f"audit sample (rate {rate:g})" if origin == "audit_sample" else "uncertain score"
    return (
        f"moderation-worker {why}: policy {verdict['policy']}, model label {verdict['label']}, "
        f"score {float(verdict['score']):.3f}"
    )


class ReportedIndex:
    """The most recent reports by (item, policy), so a decision can name what it answers,
    and which of them still await a decision.

    Bounded, in memory, refilled from the review topic at start-up (refill.py): a decision
    whose report is not here still goes out when the callback names its policies, with
    ``policy_version`` and ``origin`` left null (eval then takes them from the review record).
    """

    def __init__(self, size: int = 200_000) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, str], Reported] = OrderedDict()
        self._by_item: dict[str, dict[str, None]] = {}  # item -> its policies, in report order
        self._decided: set[tuple[str, str]] = set()

    def add(self, item: str, policy: str, reported: Reported) -> None:
        """A report was sent: it awaits a decision, even if an earlier one was decided."""
        self._entries[(item, policy)] = reported
        self._entries.move_to_end((item, policy))
        self._by_item.setdefault(item, {})[policy] = None
        self._decided.discard((item, policy))
        while len(self._entries) > self._size:
            old_item, old_policy = self._entries.popitem(last=False)[0]
            self._decided.discard((old_item, old_policy))
            policies = self._by_item[old_item]
            del policies[old_policy]
            if not policies:
                del self._by_item[old_item]

    @property
    def size(self) -> int:
        return self._size

    def decided(self, item: str, policy: str) -> None:
        if (item, policy) in self._entries:
            self._decided.add((item, policy))

    def get(self, item: str, policy: str) -> Reported | None:
        return self._entries.get((item, policy))

    def policies_of(self, item: str) -> list[str]:
        return list(self._by_item.get(item, ()))

    def open_policies(self, item: str) -> list[str]:
        """The item's reported policies that no published decision has answered yet."""
        return [p for p in self.policies_of(item) if (item, p) not in self._decided]
