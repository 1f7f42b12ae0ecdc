"""Which rows of an evaluation sample the hash banks decide, and whether they agree with
the rows' labels. Pure functions; the model is still scored on every row, so its figures
stay comparable with runs without banks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...hashbanks import BankSet, decide
from .dataset import Row


@dataclass(frozen=True)
class BankCheck:
    """One row a bank decides: the worker would not ask the model about it."""

    line: int
    id: str
    content: str
    policy: str
    label: int  # the row's (gold) label
    bank_label: int
    bank: str
    signal_type: str

    @property
    def agrees(self) -> bool:
        return self.label == self.bank_label


def check_rows(rows: Sequence[Row], banks: BankSet) -> list[BankCheck]:
    checks = []
    for row in rows:
        if row.content is None:  # media alone: no text to match
            continue
        decision = decide(banks.match_text(row.content), [row.policy]).get(row.policy)
        if decision is not None:
            match = decision.match
            checks.append(
                BankCheck(
                    row.line, row.id, row.content, row.policy, row.label,
                    decision.label, match.bank.name, match.signal_type,
                )
            )  # fmt: skip
    return checks
