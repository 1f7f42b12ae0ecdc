"""Hash banks: known content decided before the verdict cache and the model.

``signals``: the signal types (python-threatexchange's names and hash strings) and how
content becomes them; ``files``: the bank directory's format; ``pdq_index``: the PDQ
search; ``banks``: a loaded ``BankSet`` and its matching; ``decide``: matches to per-policy
decisions; ``reload``: watching the directory and swapping banks in.
"""

from .banks import BankSet, Match, load_banks
from .decide import Decision, decide, decide_parts
from .files import Bank, BankError
from .signals import NO_SIGNALS, MediaSignals, media_signals

__all__ = [
    "NO_SIGNALS",
    "Bank",
    "BankError",
    "BankSet",
    "Decision",
    "Match",
    "MediaSignals",
    "decide",
    "decide_parts",
    "load_banks",
    "media_signals",
]
