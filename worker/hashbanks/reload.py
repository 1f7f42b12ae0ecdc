"""Loading banks for serving, and reloading them when their directory changes.

Loading reads and indexes the files off the event loop (ten million PDQ hashes take a
while), then checks that every bank decides only loaded production policies. A reload that
fails keeps the banks in use and logs the one-line reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import structlog

from ..config import HashBankSettings
from ..policies import PolicyRegistry
from .banks import BankSet, load_banks
from .files import BankError

log = structlog.get_logger("worker.hashbanks")


async def load_for_serving(settings: HashBankSettings, registry: PolicyRegistry) -> BankSet | None:
    """The configured banks, checked against the policies; None when none are configured.
    Raises BankError."""
    if settings.dir is None:
        return None
    banks = await asyncio.to_thread(load_banks, Path(settings.dir), settings.pdq_distance)
    check_policies(banks, registry)
    return banks


def check_policies(banks: BankSet, registry: PolicyRegistry) -> None:
    """Every policy a bank decides must be loaded, and not a shadow (drafts never decide)."""
    loaded = {policy.id for policy in registry}
    for bank in banks.banks:
        unknown = [p for p in bank.policies if p not in loaded]
        if unknown:
            raise BankError(f"{bank.path}: policies not loaded: {', '.join(unknown)}")
        drafts = [p for p in bank.policies if p in registry.shadows]
        if drafts:
            raise BankError(f"{bank.path}: shadow policies never decide: {', '.join(drafts)}")


def summary(banks: BankSet) -> dict[str, int]:
    """Entries per bank and signal type, for logs: ``{"bank/type": count}``."""
    return {f"{bank}/{kind}": count for (bank, kind), count in sorted(banks.counts.items())}


async def reload_on_change(
    settings: HashBankSettings,
    registry: Callable[[], PolicyRegistry],
    swap: Callable[[BankSet], None],
    counted: Callable[[bool], None],
) -> None:
    """Reload the banks whenever their directory changes, until cancelled; ``counted``
    hears whether each reload was taken (the metrics)."""
    from watchfiles import awatch

    assert settings.dir is not None
    # ConfigMaps update by swapping a symlink; watching the directory sees the swap.
    async for _ in awatch(Path(settings.dir), force_polling=True, poll_delay_ms=500):
        try:
            banks = await load_for_serving(settings, registry())
        except BankError as exc:
            log.error("bank reload rejected; keeping the previous banks", error=str(exc))
            counted(False)
            continue
        assert banks is not None
        await asyncio.to_thread(banks.warm)  # the engine runs by now: numba may load
        swap(banks)
        counted(True)
        log.info("banks reloaded", entries=summary(banks), pdq_hashes=banks.pdq_hashes)
