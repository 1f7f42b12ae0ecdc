"""Coop action callbacks as decisions. Pure functions.

Field names follow Coop's action callback (docs/api/actions.md in roostorg/coop): ``item``
(``id``, ``typeId``), ``action`` (``id``), ``policies`` (``id``, ``name``, ``penalty``),
``actorEmail``. An action means a decision only through ``coop.decisions`` (action id ->
0/1); which policies it decides comes from ``policies``, mapped through ``coop.policies``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..decisions import Decision
from .reports import ReportedIndex
from .settings import CoopSettings


class BadCallback(ValueError):
    """A callback body that is not Coop's action callback."""


def decisions_from_action(
    payload: Any, coop: CoopSettings, index: ReportedIndex, now: datetime
) -> tuple[list[Decision], str | None]:
    """The decisions an action callback carries, or none and the reason why.

    Raises BadCallback when the body does not follow Coop's contract.
    """
    try:
        item = payload["item"]["id"]
        action = payload["action"]["id"]
        coop_policies = [p["id"] for p in payload.get("policies") or []]
        reviewer = payload.get("actorEmail") or "coop"
    except (KeyError, TypeError) as exc:
        raise BadCallback(f"not a Coop action callback: {type(exc).__name__}: {exc}") from None
    if not isinstance(item, str) or not isinstance(reviewer, str):
        raise BadCallback("not a Coop action callback: item.id and actorEmail must be strings")
    value = coop.decisions.get(str(action))
    if value is None:
        return [], f"action {action!r} is not mapped to a decision (coop.decisions)"
    policies = [p for p in map(coop.our_policy, map(str, coop_policies)) if p is not None]
    # A review without policy (e.g. a manual action) decides what was reported for the item.
    policies = policies or index.policies_of(item)
    if not policies:
        return [], f"item {item!r}: the callback names no known policy and none was reported"
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
    return decisions, None
