"""Policies: Markdown or text files, loaded into an immutable registry.

Our own files carry YAML front matter (id, title, thresholds). Published policy packs are
plain Markdown: a file without front matter takes its id from its file name and its title
from its first heading, and the whole file is the policy text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import FatalError

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n(.*)\Z", re.DOTALL)
_OPENS_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n")
_NOT_IN_ID = re.compile(r"[^a-z0-9._-]+")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
POLICY_SUFFIXES = (".md", ".txt")
# Files a published pack ships beside its policies; never policies themselves.
NOT_POLICIES = frozenset({"readme", "license", "licence", "changelog", "contributing", "notice"})


class PolicyError(FatalError):
    """A policy file or policy set that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Policy:
    id: str
    title: str
    text: str
    version: str
    threshold: float | None = None
    review_low: float | None = None
    review_high: float | None = None
    path: Path | None = None
    shadow_of: str | None = None  # the production policy this draft is scored beside
    front_matter: bool = True  # False: id and title were taken from the file


def policy_version(text: str) -> str:
    """sha256 of the exact policy text sent to the model."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_policy(source: str, path: Path | None = None) -> Policy:
    """A policy from a file's text; front matter optional when ``path`` names the file."""
    source = source.removeprefix("\ufeff")  # editors on Windows write a byte-order mark
    if not _OPENS_FRONT_MATTER.match(source):
        return _plain_policy(source, path)
    where = str(path) if path else "policy"
    match = _FRONT_MATTER.match(source)
    if not match:
        raise PolicyError(f"{where}: front matter opened with '---' is never closed by '---'")
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise PolicyError(f"{where}: front matter is not valid YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise PolicyError(f"{where}: front matter must be a mapping")
    text = match.group(2).strip()
    if not text:
        raise PolicyError(f"{where}: policy body is empty")
    policy_id = meta.get("id")
    if not isinstance(policy_id, str) or not _ID.match(policy_id):
        raise PolicyError(f"{where}: 'id' must be a lowercase identifier, got {policy_id!r}")
    shadow_of = meta.get("shadow_of")
    if shadow_of is not None and (not isinstance(shadow_of, str) or not _ID.match(shadow_of)):
        raise PolicyError(f"{where}: 'shadow_of' must be a policy id, got {shadow_of!r}")
    return Policy(
        id=policy_id,
        title=str(meta.get("title") or policy_id),
        text=text,
        version=policy_version(text),
        threshold=_unit_float(meta, "threshold", where),
        review_low=_unit_float(meta, "review_low", where),
        review_high=_unit_float(meta, "review_high", where),
        path=path,
        shadow_of=shadow_of,
    )


def _plain_policy(source: str, path: Path | None) -> Policy:
    """A policy without front matter: the whole text, id from the file name."""
    if path is None:
        raise PolicyError("policy: no front matter (a '---' block with id) and no file name")
    text = source.strip()
    if not text:
        raise PolicyError(f"{path}: policy is empty")
    policy_id = id_from_file_name(path.stem)
    if not policy_id:
        raise PolicyError(
            f"{path}: no front matter and no id in the file name: rename the file or add "
            "front matter with an 'id'"
        )
    return Policy(
        id=policy_id,
        title=first_heading(text) or path.stem,
        text=text,
        version=policy_version(text),
        path=path,
        front_matter=False,
    )


def id_from_file_name(stem: str) -> str:
    """A policy id from a file name: lowercase, other characters as '-' ("" when none)."""
    return _NOT_IN_ID.sub("-", stem.lower()).strip("-._")


def first_heading(text: str) -> str | None:
    """The text of the first Markdown ``#`` heading, if any."""
    match = _HEADING.search(text)
    return match.group(1).strip() if match else None


def _unit_float(meta: Mapping[str, object], key: str, where: str) -> float | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise PolicyError(f"{where}: '{key}' must be a number in [0, 1], got {value!r}")
    return float(value)


class PolicyRegistry:
    """An immutable set of policies plus the default set for events that name none.

    Shadow policies (drafts scored beside a production policy) are loaded like the others but
    never decide: they are not in the default set and events cannot name them.
    """

    def __init__(
        self,
        policies: Iterable[Policy],
        default: Iterable[str] = (),
        shadow_pairs: Mapping[str, str] | None = None,
    ) -> None:
        by_id: dict[str, Policy] = {}
        for policy in policies:
            if policy.id in by_id:
                first = by_id[policy.id].path or "another file"
                raise PolicyError(f"duplicate policy id {policy.id!r} in {policy.path} and {first}")
            by_id[policy.id] = policy
        if not by_id:
            raise PolicyError("no policies loaded")
        self._by_id = by_id
        self.shadows: dict[str, str] = _shadow_pairs(by_id, shadow_pairs or {})
        production = sorted(p for p in by_id if p not in self.shadows)
        self.default: tuple[str, ...] = tuple(default) or tuple(production)
        unknown = [p for p in self.default if p not in by_id]
        if unknown:
            raise PolicyError(f"default policies not found: {', '.join(unknown)}")
        drafts = [p for p in self.default if p in self.shadows]
        if drafts:
            raise PolicyError(f"default policies are shadow policies: {', '.join(drafts)}")

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self):
        return iter(self._by_id.values())

    def get(self, policy_id: str) -> Policy:
        return self._by_id[policy_id]

    def resolve(self, requested: list[str] | None) -> list[Policy]:
        """Policies for one event; raise PolicyError naming ids that are not loaded."""
        ids = self.default if not requested else list(dict.fromkeys(requested))
        unknown = [p for p in ids if p not in self._by_id]
        if unknown:
            raise PolicyError(f"unknown policy id(s): {', '.join(unknown)}")
        drafts = [p for p in ids if p in self.shadows]
        if drafts:
            raise PolicyError(
                f"policy id(s) {', '.join(drafts)} are shadow policies: they are scored beside "
                "their production policy and never decide a verdict; name the production policy"
            )
        return [self._by_id[p] for p in ids]


def _shadow_pairs(by_id: Mapping[str, Policy], configured: Mapping[str, str]) -> dict[str, str]:
    """Shadow id -> production id from front matter and configuration; both must agree."""
    pairs = {p.id: p.shadow_of for p in by_id.values() if p.shadow_of is not None}
    for shadow, production in configured.items():
        if pairs.get(shadow, production) != production:
            raise PolicyError(
                f"shadow policy {shadow!r} is the shadow of {pairs[shadow]!r} in its front "
                f"matter and of {production!r} in shadow.pairs"
            )
        pairs[shadow] = production
    for shadow, production in pairs.items():
        if shadow not in by_id:
            raise PolicyError(f"shadow.pairs names shadow policy {shadow!r}, which is not loaded")
        if production not in by_id:
            raise PolicyError(f"shadow policy {shadow!r} shadows {production!r}, not loaded")
        if production in pairs:
            raise PolicyError(
                f"shadow policy {shadow!r} shadows {production!r}, itself a shadow policy"
            )
    return pairs


def load_policies(
    directory: Path, default: Iterable[str] = (), shadow_pairs: Mapping[str, str] | None = None
) -> PolicyRegistry:
    """Load every ``*.md`` and ``*.txt`` in ``directory`` (README, LICENSE and kin excepted)."""
    if not directory.is_dir():
        raise PolicyError(f"policy directory {directory} does not exist")
    files = sorted(p for p in directory.iterdir() if is_policy_file(p.name) and p.is_file())
    return PolicyRegistry((_read(f) for f in files), default, shadow_pairs)


def is_policy_file(name: str) -> bool:
    stem, dot, suffix = name.rpartition(".")
    return (
        bool(dot)
        and f".{suffix.lower()}" in POLICY_SUFFIXES
        and stem.lower() not in NOT_POLICIES
        and not name.startswith(".")  # editors' swap files, ConfigMap's ..data links
    )


def _read(path: Path) -> Policy:
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_policy(source, path)
