"""Which policies an evaluation runs: the policy directory, plus drafts named by file.

``--policy`` and ``--compare`` take a policy id from the directory or a path to a policy
file. A file passed as ``--policy`` stands in for the directory's policy of the same id, so a
draft can be measured on a golden set before it is deployed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...policies import Policy, PolicyError, PolicyRegistry, load_policies, parse_policy


@dataclass(frozen=True)
class Selection:
    registry: PolicyRegistry
    primary: str | None
    other: Policy | None


def select_policies(directory: Path, policy: str | None, compare: str | None) -> Selection:
    """Raises PolicyError with a message for the operator."""
    draft = _read_file(policy) if policy and _is_file(policy) else None
    loaded = _load_directory(directory, required=draft is None)
    by_id = {p.id: p for p in loaded}
    if draft is not None:
        by_id[draft.id] = draft
    registry = PolicyRegistry(by_id.values())
    primary = draft.id if draft is not None else policy
    if primary is not None and primary not in by_id:
        raise PolicyError(f"unknown policy {primary!r}: not a file and not an id in {directory}")
    other = _resolve_other(compare, by_id, directory) if compare else None
    if other is not None and primary is None:
        raise PolicyError("--compare needs --policy: the policy to compare against")
    return Selection(registry, primary, other)


def _resolve_other(compare: str, by_id: dict[str, Policy], directory: Path) -> Policy:
    if _is_file(compare):
        return _read_file(compare)
    if compare in by_id:
        return by_id[compare]
    raise PolicyError(f"unknown policy {compare!r}: not a file and not an id in {directory}")


def _load_directory(directory: Path, required: bool) -> list[Policy]:
    if not required and not directory.is_dir():
        return []
    return list(load_policies(directory))


def _is_file(name: str) -> bool:
    return name.endswith(".md") or Path(name).is_file()


def _read_file(name: str) -> Policy:
    path = Path(name)
    try:
        return parse_policy(path.read_text(encoding="utf-8"), path)
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from None
