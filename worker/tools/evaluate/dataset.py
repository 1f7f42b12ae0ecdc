"""Reading evaluation samples: golden rows and contrastive pairs, as JSON lines.

Golden rows may carry media (``media_rows``): images and video files or URLs, scored as
events with media are.

A bad row never stops a run: it becomes a ``BadRow`` naming its file, line and reason, and
the rest of the file is read. Blank lines are skipped.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ...errors import WorkerError
from .media_rows import MediaSpec, parse_media


@dataclass(frozen=True)
class Row:
    """One golden item: ``label`` is the right answer for ``policy``."""

    line: int
    id: str
    content: str | None  # None: a row of media alone, "[image]"/"[video]" to the model
    label: int
    policy: str
    media: tuple[MediaSpec, ...] = ()

    @property
    def shown(self) -> str:
        """The row as reports show it: its text, then its media items."""
        return " ".join([*([self.content] if self.content else []), *map(str, self.media)])


@dataclass(frozen=True)
class Pair:
    """One content that meets ``policy_pos`` and does not meet ``policy_neg``."""

    line: int
    id: str
    content: str
    policy_pos: str
    policy_neg: str


@dataclass(frozen=True)
class BadRow:
    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


class DatasetError(WorkerError):
    """A sample file that cannot be read at all."""


def read_lines(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    return data.removeprefix(b"\xef\xbb\xbf").splitlines()


def parse_rows(
    lines: Iterable[bytes | str],
    known_policies: Collection[str],
    default_policy: str | None,
    source: str,
    base: Path | None = None,
) -> tuple[list[Row], list[BadRow]]:
    """Golden rows; ``base`` is the folder that media paths are relative to."""
    rows: list[Row] = []
    bad: list[BadRow] = []
    first_line: dict[tuple[str, str], int] = {}
    for number, obj in _objects(lines, source, bad):
        problems = _row_problems(obj, known_policies, default_policy)
        media, media_problems = parse_media(obj["media"], base) if "media" in obj else ((), [])
        if problems or media_problems:
            bad.append(BadRow(source, number, "; ".join(problems + media_problems)))
            continue
        row = Row(
            number,
            _text_id(obj["id"]),
            obj.get("content"),
            obj["label"],
            obj.get("policy") or default_policy or "",
            media,
        )
        key = (row.policy, row.id)
        if key in first_line:
            reason = f"duplicate id {row.id!r} for policy {row.policy!r} (first on line "
            bad.append(BadRow(source, number, f"{reason}{first_line[key]})"))
            continue
        first_line[key] = number
        rows.append(row)
    return rows, bad


def parse_pairs(
    lines: Iterable[bytes | str], known_policies: Collection[str], source: str
) -> tuple[list[Pair], list[BadRow]]:
    pairs: list[Pair] = []
    bad: list[BadRow] = []
    for number, obj in _objects(lines, source, bad):
        problems = _pair_problems(obj, known_policies)
        if problems:
            bad.append(BadRow(source, number, "; ".join(problems)))
            continue
        item_id = _text_id(obj["id"]) if "id" in obj else f"line-{number}"
        pairs.append(Pair(number, item_id, obj["content"], obj["policy_pos"], obj["policy_neg"]))
    return pairs, bad


def _objects(
    lines: Iterable[bytes | str], source: str, bad: list[BadRow]
) -> Iterable[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            bad.append(BadRow(source, number, f"invalid JSON: {exc}"))
            continue
        if not isinstance(obj, dict):
            bad.append(BadRow(source, number, f"a row must be a JSON object, got {_kind(obj)}"))
            continue
        yield number, obj


def _row_problems(
    obj: dict[str, Any], known: Collection[str], default_policy: str | None
) -> list[str]:
    problems = _missing(obj, ("id", "label"))
    if "content" not in obj and "media" not in obj:
        problems.append("missing field(s): content (or media)")
    problems += _id_problem(obj) + _content_problem(obj)
    label = obj.get("label")
    if "label" in obj and not (_is_int(label) and label in (0, 1)):
        problems.append(f"label must be 0 or 1, got {orjson.dumps(label).decode()}")
    policy = obj.get("policy")
    if policy is None and default_policy is None:
        problems.append("no policy: give the row a 'policy' field or pass --policy")
    elif policy is not None:
        problems += _policy_problem("policy", policy, known)
    return problems


def _pair_problems(obj: dict[str, Any], known: Collection[str]) -> list[str]:
    problems = _missing(obj, ("content", "policy_pos", "policy_neg"))
    problems += _content_problem(obj)
    if "id" in obj:
        problems += _id_problem(obj)
    for field in ("policy_pos", "policy_neg"):
        if field in obj:
            problems += _policy_problem(field, obj[field], known)
    if not problems and obj["policy_pos"] == obj["policy_neg"]:
        problems.append("policy_pos and policy_neg are the same policy")
    return problems


def _missing(obj: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    absent = [f for f in fields if f not in obj]
    return [f"missing field(s): {', '.join(absent)}"] if absent else []


def _id_problem(obj: dict[str, Any]) -> list[str]:
    value = obj.get("id")
    if "id" not in obj or (isinstance(value, str) and value) or _is_int(value):
        return []
    return ["id must be a non-empty string or an integer"]


def _content_problem(obj: dict[str, Any]) -> list[str]:
    value = obj.get("content")
    if "content" not in obj or (isinstance(value, str) and value.strip()):
        return []
    return ["content must be a non-empty string"]


def _policy_problem(field: str, value: Any, known: Collection[str]) -> list[str]:
    if not isinstance(value, str):
        return [f"{field} must be a policy id (a string)"]
    if value not in known:
        return [f"unknown policy {value!r} in {field}"]
    return []


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text_id(value: str | int) -> str:
    return value if isinstance(value, str) else str(value)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
