"""Which files of a policy directory are policies, and what each one is called by default.

Packs are published in many shapes (one file per policy, a folder per policy with a
``policy.md``, a main file without an extension beside its annexes and evaluation report,
repository documents such as README and LICENSE around them). The rules, in order:

1. A manifest, ``pack.yaml`` in the directory, names the policy files (paths relative to
   it, any name) and optionally their ``id`` and ``title``; then no other file is a policy.
2. Otherwise the directory is walked, subfolders included (hidden names, starting with
   ``.``, are never entered: editors' swap files, ``.git``, a ConfigMap's ``..data``):

   - only ``.md``, ``.markdown`` and ``.txt`` files and files without an extension are
     candidates;
   - repository documents are not policies: names written in capitals (``README.md``,
     ``LICENSE``, ``USAGE_POLICY``, ``CODE_OF_CONDUCT.md``) and the usual ones in any case
     (``readme``, ``license``, ``changelog``, ``makefile``, ...);
   - reports are not policies: names with the word ``report`` or ``evaluation``;
   - a subfolder holding a main file (``policy.md``, ``policy.txt``, ``policy``, or a file
     named like the folder: ``tvec-policy/tvec-policy``) is one policy, named after the
     folder; its other files (annexes, reports) are that policy's supporting documents.

   A file whose front matter names an ``id`` is a policy wherever it lies and whatever its
   name. Every file that is not a policy is listed with the reason, for ``policies check``.

This module decides; ``policies.py`` reads and parses the files it picks.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import FatalError, nearest

MANIFEST = "pack.yaml"
SUFFIXES = frozenset({".md", ".markdown", ".txt"})
# Repository documents in any case (those written in capitals are caught by their case).
DOCUMENTS = frozenset(
    {
        "readme", "license", "licence", "copying", "notice", "changelog", "changes",
        "history", "contributing", "code_of_conduct", "code-of-conduct", "security",
        "authors", "codeowners", "makefile", "dockerfile", "justfile", "requirements",
    }
)  # fmt: skip
REPORT_WORDS = frozenset({"report", "reports", "evaluation", "evaluations"})
MAIN_STEMS = ("policy",)  # besides the folder's own name
MANIFEST_KEYS = ("file", "id", "title")
_OPENS_WITH_ID = re.compile(r"\A\ufeff?---[ \t]*\r?\n(?:(?!---).*\n)*?id[ \t]*:", re.MULTILINE)
_CAPITALS = re.compile(r"^[A-Z0-9_-]*[A-Z][A-Z0-9_-]*$")


class PackError(FatalError):
    """The pack cannot be read at all (directory missing, manifest broken)."""


@dataclass(frozen=True)
class PackFile:
    """One file found in a pack: a policy candidate, or a file skipped with its reason."""

    path: Path
    name: str  # relative to the pack directory, with '/'
    skipped: str | None = None  # why this file is not a policy; None for policies
    default_id: str | None = None  # the id to use when the file has none of its own
    title: str | None = None  # from the manifest
    forced_id: bool = False  # default_id is the manifest's: it wins over front matter


def scan_pack(directory: Path) -> list[PackFile]:
    """Every file of the pack with its role, policies first in name order."""
    if not directory.is_dir():
        raise PackError(f"policy directory {directory} does not exist")
    manifest = directory / MANIFEST
    try:
        files = _from_manifest(directory, manifest) if manifest.is_file() else _walk(directory)
    except OSError as exc:  # a folder that cannot be listed, say
        reason = f"{exc.strerror or exc}: {exc.filename}"
        raise PackError(f"policy directory {directory} cannot be read: {reason}") from None
    return sorted(files, key=lambda f: (f.skipped is not None, f.name))


# ---- the manifest -------------------------------------------------------------------


def _from_manifest(directory: Path, manifest: Path) -> list[PackFile]:
    listed = [_manifest_entry(directory, item, n) for n, item in _manifest_items(manifest)]
    named = {f.name for f in listed}
    others = [
        PackFile(f.path, f.name, skipped=f"not listed in {MANIFEST}")
        for f in _walk(directory)
        if f.name not in named and f.name != MANIFEST
    ]
    return listed + others


def _manifest_items(manifest: Path) -> Iterator[tuple[int, object]]:
    try:
        data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PackError(f"{manifest}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict) or not isinstance(data.get("policies"), list):
        raise PackError(f"{manifest}: must be a mapping with a 'policies' list")
    extra = sorted(set(data) - {"policies"})
    if extra:
        raise PackError(f"{manifest}: unknown key {extra[0]!r}{nearest(extra[0], ['policies'])}")
    yield from enumerate(data["policies"], start=1)


def _manifest_entry(directory: Path, item: object, number: int) -> PackFile:
    where = f"{directory / MANIFEST}: policy {number}"
    if isinstance(item, str):
        item = {"file": item}
    if not isinstance(item, dict) or not isinstance(item.get("file"), str):
        raise PackError(f"{where}: give a file name, or a mapping with 'file' (and 'id', 'title')")
    for key in item:
        if key not in MANIFEST_KEYS:
            raise PackError(f"{where}: unknown key {key!r}{nearest(str(key), MANIFEST_KEYS)}")
    path = directory / item["file"]
    if not path.is_file():
        raise PackError(f"{where}: file {item['file']!r} is not in {directory}")
    policy_id, title = item.get("id"), item.get("title")
    return PackFile(
        path,
        Path(item["file"]).as_posix(),
        default_id=str(policy_id) if policy_id is not None else None,
        title=str(title) if title is not None else None,
        forced_id=policy_id is not None,
    )


# ---- walking a pack without a manifest ---------------------------------------------


def _walk(directory: Path) -> list[PackFile]:
    found: list[PackFile] = []
    _walk_folder(directory, directory, found, seen={directory.resolve()})
    return found


def _walk_folder(root: Path, folder: Path, found: list[PackFile], seen: set[Path]) -> None:
    entries = sorted((e for e in folder.iterdir() if not e.name.startswith(".")), key=_by_name)
    main = _main_file(folder, entries) if folder != root else None
    for entry in entries:
        name = entry.relative_to(root).as_posix()
        if entry.is_dir():
            real = entry.resolve()
            if real not in seen:  # a symlink loop, or a second link to the same folder
                seen.add(real)
                _walk_folder(root, entry, found, seen)
        elif entry.is_file():
            found.append(_classify(entry, name, folder, main))
    if main is not None:
        # Supporting documents of a main file: everything below its folder too.
        found[:] = [_supporting(f, folder, main) for f in found]


def _by_name(path: Path) -> str:
    return path.name


def _main_file(folder: Path, entries: list[Path]) -> Path | None:
    stems = {*MAIN_STEMS, folder.name.lower()}
    mains = [e for e in entries if e.is_file() and _candidate(e.name) and _stem(e.name) in stems]
    return mains[0] if mains else None


def _classify(path: Path, name: str, folder: Path, main: Path | None) -> PackFile:
    if path == main:
        return PackFile(path, name, default_id=_folder_id(folder))
    reason = _not_a_policy(path.name)
    if reason is not None and not _names_an_id(path):
        return PackFile(path, name, skipped=reason)
    return PackFile(path, name)


def _supporting(found: PackFile, folder: Path, main: Path) -> PackFile:
    inside = folder in found.path.parents
    if not inside or found.path == main or found.skipped is not None or _names_an_id(found.path):
        return found
    return PackFile(found.path, found.name, skipped=f"supporting document of {main.name}")


def _not_a_policy(name: str) -> str | None:
    """Why a file of this name is not a policy, or None when it may be one."""
    if not _candidate(name):
        return "not a policy file type (.md, .markdown, .txt or no extension)"
    stem = _stem(name)
    if stem in DOCUMENTS or _CAPITALS.match(name.rpartition(".")[0] or name):
        return "a repository document (README, LICENSE and the like), not a policy"
    if REPORT_WORDS & set(re.split(r"[^a-z0-9]+", _unaccented(stem))):
        return "a report, not a policy (its name says report or evaluation)"
    return None


def _unaccented(text: str) -> str:
    """The text without its accents, so that a name such as "Évaluation" reads as the word."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _candidate(name: str) -> bool:
    stem, dot, suffix = name.rpartition(".")
    return not dot or not stem or f".{suffix.lower()}" in SUFFIXES


def _stem(name: str) -> str:
    stem, dot, _ = name.rpartition(".")
    return (stem if dot and stem and _candidate(name) else name).lower()


def _folder_id(folder: Path) -> str:
    return folder.name


def _names_an_id(path: Path) -> bool:
    """Whether the file opens with front matter that names an id (then it is a policy)."""
    try:
        with path.open(encoding="utf-8") as handle:
            head = handle.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    return bool(_OPENS_WITH_ID.match(head))
