"""Coop callbacks as decisions. Pure functions.

Two callbacks carry what a person decided in Coop's review console:

- the **action callback** (docs/api/actions.md in roostorg/coop): ``item`` (``id``,
  ``typeId``), ``action`` (``id``), ``policies`` (``id``, ``name``, ``penalty``), ``rules``,
  ``actorEmail``. An action means a decision only through ``coop.decisions`` (action id ->
  0/1); which policies it decides comes from ``policies``, mapped through ``coop.policies``.
  Coop also sends it when its own rules or a user-strike threshold trigger the action; those
  carry no ``actorEmail``. They are automated verdicts, not ground truth, so they become no
  decision: only a callback naming the person who acted does.
- the **Ignore callback**: Coop's server posts the job's item, ``{id, typeId, data}``, to the
  organisation's Ignore Callback URL when a reviewer closes the job with no action. It is a
  decision of 0 for the policies the item was reported for.

A callback naming no policy decides the item's reported policies that still await a
decision, or all of them when none does (a second review of the item).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..config import CoopSettings
from ..decisions import Decision
from .reports import ReportedIndex

IGNORE_REVIEWER = "coop-ignore"  # Coop's Ignore callback does not name the reviewer


class BadCallback(ValueError):
    """A callback body that is not the Coop callback it was sent as."""


@dataclass(frozen=True)
class Outcome:
    """What a callback means: decisions to publish, or why there are none.

    ``automated``: a rule- or strike-triggered action, acknowledged and published nowhere.
    ``refused``: a human callback that cannot be turned into decisions (answered 422).
    """

    decisions: list[Decision] = field(default_factory=list)
    automated: str | None = None
    refused: str | None = None


def decisions_from_action(
    payload: Any, coop: CoopSettings, index: ReportedIndex, now: datetime
) -> Outcome:
    """The decisions an action callback carries. Raises BadCallback off Coop's contract."""
    try:
        item = payload["item"]["id"]
        action = payload["action"]["id"]
        coop_policies = [p["id"] for p in payload.get("policies") or []]
        rules = [str(r.get("name") or r["id"]) for r in payload.get("rules") or []]
        reviewer = payload.get("actorEmail")
    except (KeyError, TypeError, AttributeError) as exc:
        raise BadCallback(f"not a Coop action callback: {type(exc).__name__}: {exc}") from None
    if not isinstance(item, str) or not isinstance(reviewer, str | None):
        raise BadCallback("not a Coop action callback: item.id and actorEmail must be strings")
    if not reviewer:
        trigger = f"rules {', '.join(rules)}" if rules else "no person (a user-strike threshold)"
        return Outcome(automated=f"action {action!r} on {item!r} triggered by {trigger}")
    value = coop.decisions.get(str(action))
    if value is None:
        return Outcome(
            refused=f"action {action!r} on {item!r} is not mapped to a decision (coop.decisions)"
        )
    policies = [p for p in map(coop.our_policy, map(str, coop_policies)) if p is not None]
    return _decide(item, policies, value, reviewer, index, now)


def decisions_from_ignore(payload: Any, index: ReportedIndex, now: datetime) -> Outcome:
    """Decisions of 0 from Coop's Ignore callback. Raises BadCallback off Coop's contract."""
    try:
        item, _type = payload["id"], payload["typeId"]
    except (KeyError, TypeError) as exc:
        raise BadCallback(f"not a Coop Ignore callback: {type(exc).__name__}: {exc}") from None
    if not isinstance(item, str):
        raise BadCallback("not a Coop Ignore callback: id must be a string")
    return _decide(item, [], 0, IGNORE_REVIEWER, index, now)


def _decide(
    item: str,
    policies: list[str],
    value: int,
    reviewer: str,
    index: ReportedIndex,
    now: datetime,
) -> Outcome:
    policies = policies or index.open_policies(item) or index.policies_of(item)
    if not policies:
        return Outcome(
            refused=f"item {item!r}: the callback names no known policy and no report of the "
            "item is known (reported to another replica, or longer ago than the index holds)"
        )
    decisions = []
    for policy in dict.fromkeys(policies):
        reported = index.get(item, policy)
        decisions.append(
            Decision(
                id=item,
                policy=policy,
                policy_version=reported.policy_version if reported else None,
                decision=value,
                reviewer=reviewer,
                decided_at=now,
                origin=reported.origin if reported else None,
            )
        )
    return Outcome(decisions)
