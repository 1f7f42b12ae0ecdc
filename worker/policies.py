"""Policies: Markdown or text files, loaded into an immutable registry.

Our own files carry YAML front matter (id, title, thresholds). Published packs are often
plain Markdown, or carry front matter written for other tools (``title``, ``versions``,
``redirect_from``): keys the worker does not read are kept as the policy's metadata, never a
reason to refuse it. Without an ``id`` of its own, a policy is named by its file (or by its
folder, for a folder's main file: see ``packs.py``); its title is the front matter's, else
the line that opens the text, else its first heading that is more than a section name.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import FatalError
from .packs import PackError, PackFile, scan_pack

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n(.*))?\Z", re.DOTALL)
_OPENS_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n")
_NOT_IN_ID = re.compile(r"[^a-z0-9._-]+")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_BOLD_LINE = re.compile(r"^\*\*([^*]+)\*\*$")
ID_MAX = 64
# libyaml's loader where PyYAML was built with it: ten times faster on a large pack.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Front matter keys the worker reads; any other key is kept as metadata.
KNOWN_KEYS = ("id", "title", "description", "threshold", "review_low", "review_high", "shadow_of")
# Headings that name a section, not the policy (Zentropi's format opens with "# Criteria").
SECTION_NAMES = frozenset(
    {
        "criteria", "overview", "policy", "goal", "goals", "definitions", "definition of terms",
        "instructions", "introduction", "summary", "contents", "table of contents", "content",
    }
)  # fmt: skip


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
    front_matter: bool = True  # False: the file has no front matter at all
    metadata: Mapping[str, Any] = field(default_factory=dict)  # front matter we do not read
    id_from: str = "front matter"  # where the id came from: front matter, pack.yaml, file, folder


def policy_version(text: str) -> str:
    """sha256 of the exact policy text sent to the model."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_policy(source: str, path: Path | None = None, found: PackFile | None = None) -> Policy:
    """A policy from a file's text; ``found`` says how its pack names it (default: the file)."""
    source = source.removeprefix("\ufeff")  # editors on Windows write a byte-order mark
    where = str(path) if path else "policy"
    meta, text = _split(source, where)
    if not text:
        raise PolicyError(f"{where}: policy {'body ' if meta is not None else ''}is empty")
    values = meta or {}
    policy_id, id_from = _policy_id(values, path, found, where)
    shadow_of = values.get("shadow_of")
    if shadow_of is not None and (not isinstance(shadow_of, str) or not _ID.match(shadow_of)):
        raise PolicyError(f"{where}: 'shadow_of' must be a policy id, got {shadow_of!r}")
    return Policy(
        id=policy_id,
        title=_title(values, text, found, path, policy_id),
        text=text,
        version=policy_version(text),
        threshold=_unit_float(values, "threshold", where),
        review_low=_unit_float(values, "review_low", where),
        review_high=_unit_float(values, "review_high", where),
        path=path,
        shadow_of=shadow_of,
        front_matter=meta is not None,
        metadata={k: v for k, v in values.items() if k not in KNOWN_KEYS},
        id_from=id_from,
    )


def _split(source: str, where: str) -> tuple[dict[str, Any] | None, str]:
    """(front matter or None, the policy text)."""
    if not _OPENS_FRONT_MATTER.match(source):
        return None, source.strip()
    match = _FRONT_MATTER.match(source)
    if not match:
        raise PolicyError(f"{where}: front matter opened with '---' is never closed by '---'")
    try:
        meta = yaml.load(match.group(1), Loader=_YAML_LOADER) or {}  # noqa: S506 (safe)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise PolicyError(f"{where}: front matter is not valid YAML: {reason}") from None
    if not isinstance(meta, dict):
        raise PolicyError(f"{where}: front matter must be a mapping")
    return {str(k): v for k, v in meta.items()}, (match.group(2) or "").strip()


def _policy_id(
    meta: Mapping[str, Any], path: Path | None, found: PackFile | None, where: str
) -> tuple[str, str]:
    if found is not None and found.forced_id:
        return _checked_id(found.default_id, where, "pack.yaml 'id'"), "pack.yaml"
    if "id" in meta:
        return _checked_id(meta["id"], where, "'id'"), "front matter"
    if path is None:
        raise PolicyError("policy: no front matter (a '---' block with id) and no file name")
    by_folder = found is not None and found.default_id is not None
    policy_id = id_from_name(found.default_id if by_folder else _stem(path))  # type: ignore[union-attr,arg-type]
    if not policy_id:
        what = "folder" if by_folder else "file"
        raise PolicyError(
            f"{where}: no id in the {what} name: rename the {what}, add front matter with an "
            "'id', or give one in pack.yaml"
        )
    return policy_id, "folder name" if by_folder else "file name"


def _checked_id(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise PolicyError(f"{where}: {what} must be a lowercase identifier, got {value!r}")
    return value


def _stem(path: Path) -> str:
    return path.stem if path.suffix.lower() in (".md", ".markdown", ".txt") else path.name


def id_from_name(name: str) -> str:
    """A readable id from a file or folder name ("" when none): accents dropped, lowercase,
    each run of other characters one '-', at most 64 characters, cut at a '-'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    policy_id = _NOT_IN_ID.sub("-", ascii_name.lower())
    policy_id = re.sub(r"-[-._]*-|-{2,}", "-", policy_id).strip("-._")
    if len(policy_id) > ID_MAX:
        cut = policy_id[: ID_MAX + 1]
        policy_id = (cut.rsplit("-", 1)[0] if "-" in cut else cut[:ID_MAX]).strip("-._")
    return policy_id


def _title(
    meta: Mapping[str, Any], text: str, found: PackFile | None, path: Path | None, policy_id: str
) -> str:
    if found is not None and found.title:
        return found.title
    if meta.get("title"):
        return str(meta["title"])
    if path is None:
        return policy_id
    fallback = found.default_id if found is not None and found.default_id else _stem(path)
    return title_of(text) or fallback


def title_of(text: str) -> str | None:
    """The policy's own name: the line that opens it (a heading, a bold line, or a short
    line followed by a heading), else the first heading that is not a section name."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines:
        first = _line_title(lines[0], lines[1] if len(lines) > 1 else "")
        if first and first.lower().rstrip(":") not in SECTION_NAMES:
            return first
    for match in _HEADING.finditer(text):
        heading = _plain(match.group(1))
        if heading.lower().rstrip(":") not in SECTION_NAMES:
            return heading
    return None


def _line_title(line: str, following: str) -> str | None:
    heading = _HEADING.match(line)
    if heading:
        return _plain(heading.group(1))
    bold = _BOLD_LINE.match(line)
    if bold:
        return _plain(bold.group(1))
    if len(line) <= 80 and not line.endswith((".", ":", ";", ",")) and _HEADING.match(following):
        return line
    return None


def _plain(heading: str) -> str:
    return heading.strip().strip("*_").strip()


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
        sources: Mapping[PackFile, Read] | None = None,
    ) -> None:
        # What each file held when read (``load_policies``): a reload parses only changes.
        self.sources: Mapping[PackFile, Read] = sources or {}
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


@dataclass(frozen=True)
class PackResult:
    """One file of a pack: its policy, the error that kept it out, or why it is not one."""

    file: PackFile
    policy: Policy | None = None
    error: str | None = None


# A policy file as read: a digest of its text, and what it parsed to.
Read = tuple[bytes, PackResult]


def read_pack(directory: Path) -> list[PackResult]:
    """Every file of the pack, parsed where it is a policy; raises PolicyError only when the
    pack itself cannot be read (no directory, a broken pack.yaml)."""
    return [result for _, result in _read_pack(directory, {}).values()]


def _read_pack(directory: Path, known: Mapping[PackFile, Read]) -> dict[PackFile, Read]:
    try:
        files = scan_pack(directory)
    except PackError as exc:
        raise PolicyError(str(exc)) from None
    return {f: _read(f, known) if f.skipped is None else (b"", PackResult(f)) for f in files}


def load_policies(
    directory: Path,
    default: Iterable[str] = (),
    shadow_pairs: Mapping[str, str] | None = None,
    previous: PolicyRegistry | None = None,
) -> PolicyRegistry:
    """The pack's policies (``packs.py`` says which files); PolicyError naming every file
    that cannot load, in one line. Files whose text is what ``previous`` read are not parsed
    again."""
    read = _read_pack(directory, previous.sources if previous is not None else {})
    results = [result for _, result in read.values()]
    errors = [r.error for r in results if r.error is not None]
    if len(errors) == 1:
        raise PolicyError(errors[0])
    if errors:
        raise PolicyError(f"{len(errors)} policy files cannot load: " + "; ".join(errors))
    policies = (r.policy for r in results if r.policy)
    return PolicyRegistry(policies, default, shadow_pairs, sources=read)


def _read(found: PackFile, known: Mapping[PackFile, Read]) -> Read:
    path = found.path
    try:
        source = path.read_text(encoding="utf-8")
        digest = hashlib.blake2b(source.encode("utf-8"), digest_size=16).digest()
        before = known.get(found)
        if before is not None and before[0] == digest:
            return before
        return digest, PackResult(found, policy=parse_policy(source, path, found))
    except UnicodeDecodeError as exc:
        error = f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
    except OSError as exc:
        error = f"{path}: cannot be read: {exc.strerror or exc}"
    except PolicyError as exc:
        error = str(exc)
    return b"", PackResult(found, error=error)
