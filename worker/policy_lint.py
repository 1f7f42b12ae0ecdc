"""Warnings about a policy that loads but may not do what its author meant. Pure functions.

The model reads the policy inside the CoPE prompt, whose own sections are headed by bare
``POLICY`` and ``CONTENT`` lines underlined with ``=``; a policy with such lines changes what
the model reads. Policies written for another model often tell it how to answer (JSON,
``VALID``/``INVALID``, "respond with ..."), which contradicts the prompt's own instruction to
answer "1" or "0". Front matter keys close to ours are most likely misspelt ones, which the
worker would otherwise ignore without a word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import nearest
from .policies import KNOWN_KEYS, Policy

_SECTION_LINE = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*)?(POLICY|CONTENT)[ \t]*:?[ \t]*$")
_RULE_LINE = re.compile(r"^[ \t]*=+[ \t]*$")
_JSON = re.compile(r"\bjson\b", re.IGNORECASE)
_VALID_INVALID = re.compile(r"\b(?:VALID|INVALID)\b")
_ANSWER_FORMAT = re.compile(
    r"\b(?:respond|reply|answer|return|output)[ \t]+(?:with|as follows|exactly|only)\b"
    r"|^\W*output(?:[ \t]+format)?\W*:",
    re.IGNORECASE,
)


TYPO = 0.8  # how alike a key must be to one of ours to count as its misspelling


@dataclass(frozen=True)
class Finding:
    level: str  # "warning": --strict fails on it; "note": for information
    message: str


def lint(policy: Policy) -> list[Finding]:
    """What ``policies check`` says about one loaded policy, warnings first."""
    lines = policy.text.splitlines()
    findings = [
        *_lines(lines, _SECTION_LINE, "a bare {0!r} line reads as the prompt's own heading"),
        *_lines(lines, _RULE_LINE, "a line of '=' reads as the underline of a prompt heading"),
        *_lines(lines, _JSON, "asks for JSON output; this model answers only 1 or 0", "json"),
        *_lines(
            lines,
            _VALID_INVALID,
            "asks for VALID/INVALID labels (another model's answers); this model answers 1 "
            "or 0 to the prompt's own question",
            "VALID/INVALID",
        ),
        *_lines(
            lines,
            _ANSWER_FORMAT,
            "tells the model how to answer; the prompt already asks for 1 or 0",
            "answer format",
        ),
    ]
    findings += _keys(policy.metadata)
    return sorted(findings, key=lambda f: f.level != "warning")


def _lines(
    lines: list[str], pattern: re.Pattern[str], message: str, key: str = ""
) -> list[Finding]:
    """One finding per kind: the first line it is on, and how many more there are."""
    hits = [(n, m) for n, line in enumerate(lines, start=1) if (m := pattern.search(line))]
    if not hits:
        return []
    number, match = hits[0]
    more = (
        f" (and {len(hits) - 1} more line{'s' if len(hits) > 2 else ''})" if len(hits) > 1 else ""
    )
    text = message.format(match.group(1) if match.groups() else key)
    return [Finding("warning", f"line {number}{more}: {text}")]


def _keys(metadata: Iterable[str]) -> list[Finding]:
    findings: list[Finding] = []
    foreign: list[str] = []
    for key in metadata:
        hint = nearest(key, KNOWN_KEYS, cutoff=TYPO)
        if hint:
            findings.append(
                Finding("warning", f"front matter key {key!r} is not one the worker reads{hint}")
            )
        else:
            foreign.append(key)
    if foreign:
        keys = ", ".join(foreign)
        findings.append(Finding("note", f"front matter kept as metadata, not read: {keys}"))
    return findings
