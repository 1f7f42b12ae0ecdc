"""Which rows of an evaluation sample the hash banks decide, and whether they agree with
the rows' labels. Pure functions; the model is still scored on every row, so its figures
stay comparable with runs without banks.

A row is decided as the worker's hash pass decides an event (``decide_parts``): its text and
each of its media items are parts, matched by the signals computed when the row's media were
fetched and decoded. A row whose media could not be prepared is a failed row, never decided.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ...hashbanks import BankSet, Match, decide_parts
from ...hashbanks.signals import MediaSignals
from .dataset import Row
from .media_rows import MediaSpec


@dataclass(frozen=True)
class BankCheck:
    """One row a bank decides: the worker would not ask the model about it."""

    line: int
    id: str
    content: str  # the row as reports show it: its text, then its media items
    policy: str
    label: int  # the row's (gold) label
    bank_label: int
    bank: str
    signal_type: str

    @property
    def agrees(self) -> bool:
        return self.label == self.bank_label


def check_rows(
    rows: Sequence[Row],
    banks: BankSet,
    media: Mapping[tuple[MediaSpec, ...], Sequence[MediaSignals]] | None = None,
) -> list[BankCheck]:
    """``media``: the signals of each row's media items, by the row's media specs."""
    media = media or {}
    checks = []
    for row in rows:
        parts = _parts(row, banks, media)
        if parts is None:
            continue
        decision = decide_parts(parts, [row.policy]).get(row.policy)
        if decision is not None:
            match = decision.match
            checks.append(
                BankCheck(
                    row.line, row.id, row.shown, row.policy, row.label,
                    decision.label, match.bank.name, match.signal_type,
                )
            )  # fmt: skip
    return checks


def _parts(
    row: Row, banks: BankSet, media: Mapping[tuple[MediaSpec, ...], Sequence[MediaSignals]]
) -> list[list[Match]] | None:
    """Each part's matches: the text's, then each media item's; None for a row whose
    media were not prepared."""
    if row.media and row.media not in media:
        return None
    parts = [banks.match_text(row.content)] if row.content else []
    if row.media:
        parts += banks.match_media(media[row.media])
    return parts
