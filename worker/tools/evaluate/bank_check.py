"""Which rows of an evaluation sample the hash banks decide, and whether they agree with
the rows' labels. Pure functions; the model is still scored on every row, so its figures
stay comparable with runs without banks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ...hashbanks import BankSet, decide
from .dataset import Row
from .document import Block, Heading, Para, Table, short


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


def bank_blocks(checks: Sequence[BankCheck]) -> list[Block]:
    """The report's hash-bank section: rows decided per bank, agreement, disagreements."""
    blocks: list[Block] = [
        Heading(2, "Hash banks"),
        Para(
            f"Rows decided by a hash bank: {len(checks)}. The worker would not ask the model "
            "about them; the figures above still score every row with the model."
        ),
    ]
    if not checks:
        return blocks
    totals = Counter(c.bank for c in checks)
    agreeing = Counter(c.bank for c in checks if c.agrees)
    blocks.append(
        Table(
            ["bank", "rows", "agree with the label", "disagree"],
            [
                [bank, str(count), str(agreeing[bank]), str(count - agreeing[bank])]
                for bank, count in sorted(totals.items())
            ],
        )
    )
    wrong = [c for c in checks if not c.agrees]
    if wrong:
        blocks.append(
            Table(
                ["line", "id", "policy", "label", "bank", "bank label", "content"],
                [
                    [
                        str(c.line),
                        c.id,
                        c.policy,
                        str(c.label),
                        c.bank,
                        str(c.bank_label),
                        short(c.content, 60),
                    ]
                    for c in wrong
                ],  # fmt: skip
                long=True,
            )
        )
    return blocks
