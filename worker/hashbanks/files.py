"""Reading a bank directory: each bank's YAML and its signal files, checked line by line.

A bank ``NAME`` is ``NAME.yaml`` (or ``.yml``): the policies it decides, the label it gives
them and the route. Its signals are in ``NAME.txt``, ``NAME.csv`` and ``NAME.*.txt`` /
``NAME.*.csv`` (one bank split over files) beside it:

- ``.txt``: python-threatexchange's signal-file format, one ``<signal_type> <signal>`` per
  line (``pdq 3a5c...``), or one bare signal per line when the YAML names ``signal_type``.
  Blank lines and lines starting with ``#`` are skipped.
- ``.csv``: the CSV that ``threatexchange dataset -P --csv`` exports: a header naming
  ``signal_type`` and ``signal_str`` (other columns ignored), one signal per row.

Any bad entry stops the load with ``path:line: reason``; the caller keeps what it had.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import FatalError
from ..events import first_errors
from .signals import PDQ, SignalError, check_type, entry_key

BANK_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
CONFIG_SUFFIXES = (".yaml", ".yml")
SIGNAL_SUFFIXES = (".txt", ".csv")
# python-threatexchange's rule for a PDQ hash (PdqSignal.validate_signal_str), checked over a
# whole file's hashes at once: ten million lines one by one would take minutes.
_PDQ_HEX = re.compile(r"[0-9a-f]*")


class BankError(FatalError):
    """A bank file that cannot be used; the message names the file (and line) and why."""


class BankConfig(BaseModel):
    """One bank's YAML."""

    model_config = ConfigDict(extra="forbid", strict=True)

    policies: list[str] = Field(min_length=1, description="Policies a match decides.")
    label: Literal[0, 1] = Field(description="1: known violating; 0: known good.")
    route: Literal["auto", "review"] = "auto"
    signal_type: str | None = Field(None, description="Type of .txt lines that name none.")
    description: str = ""


@dataclass(frozen=True)
class Bank:
    name: str
    policies: tuple[str, ...]
    label: Literal[0, 1]
    route: Literal["auto", "review"]
    path: Path


@dataclass(frozen=True)
class Entry:
    """One signal of one bank: its type and the key it is looked up by."""

    signal_type: str
    key: str


@dataclass(frozen=True)
class Signals:
    """A bank's signals: exact ones as entries, PDQ hashes as one (n, 32) uint8 array."""

    entries: list[Entry]
    pdq: np.ndarray


def read_directory(directory: Path) -> list[tuple[Bank, Signals]]:
    """Every bank in the directory with its entries, in bank-name order."""
    if not directory.is_dir():
        raise BankError(f"bank directory {directory} does not exist")
    files = sorted(p for p in directory.iterdir() if not p.name.startswith(".") and p.is_file())
    configs = {p.stem: p for p in files if p.suffix.lower() in CONFIG_SUFFIXES}
    signal_files: dict[str, list[Path]] = {name: [] for name in configs}
    for path in files:
        if path.suffix.lower() not in SIGNAL_SUFFIXES:
            continue  # a README or other file beside the banks
        owner = path.name.split(".", 1)[0]
        if owner not in configs:
            raise BankError(f"{path}: no bank {owner}.yaml beside it names its policies")
        signal_files[owner].append(path)
    banks = []
    for name, config_path in sorted(configs.items()):
        bank, config = _read_config(name, config_path)
        parts = [_read_signals(path, config) for path in signal_files[name]]
        entries = [entry for part in parts for entry in part.entries]
        pdq = np.concatenate([part.pdq for part in parts]) if parts else _no_pdq()
        banks.append((bank, Signals(entries, pdq)))
    return banks


def _no_pdq() -> np.ndarray:
    return np.empty((0, 32), dtype=np.uint8)


def _read_config(name: str, path: Path) -> tuple[Bank, BankConfig]:
    if not BANK_ID.match(name):
        raise BankError(f"{path}: a bank name is lowercase letters, digits, '-' and '_'")
    try:
        data = yaml.safe_load(_text(path))
    except yaml.YAMLError as exc:
        raise BankError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    try:
        config = BankConfig.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise BankError(f"{path}: {first_errors(exc, 'bank')}") from None
    if config.signal_type is not None:
        try:
            check_type(config.signal_type)
        except SignalError as exc:
            raise BankError(f"{path}: signal_type: {exc}") from None
    bank = Bank(name, tuple(config.policies), config.label, config.route, path)
    return bank, config


def _read_signals(path: Path, config: BankConfig) -> Signals:
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _txt_rows(path, config)
    entries: list[Entry] = []
    hashes: list[tuple[int, str]] = []
    for line, signal_type, value in rows:
        if signal_type == PDQ:
            hashes.append((line, value.strip()))
            continue
        try:
            entries.append(Entry(signal_type, entry_key(signal_type, value)))
        except SignalError as exc:
            raise BankError(f"{path}:{line}: {exc}") from None
    return Signals(entries, _pdq_codes(path, hashes))


def _pdq_codes(path: Path, hashes: list[tuple[int, str]]) -> np.ndarray:
    """The hashes as bytes; BankError naming the first bad line, in the library's words."""
    if not hashes:
        return _no_pdq()
    joined = "".join(value for _, value in hashes)
    if all(len(value) == 64 for _, value in hashes) and _PDQ_HEX.fullmatch(joined):
        return np.frombuffer(bytes.fromhex(joined), dtype=np.uint8).reshape(-1, 32)
    for line, value in hashes:
        try:
            entry_key(PDQ, value)
        except SignalError as exc:
            raise BankError(f"{path}:{line}: {exc}") from None
    raise AssertionError("the library accepts every hash the fast check refused")


def _txt_rows(path: Path, config: BankConfig) -> Iterator[tuple[int, str, str]]:
    for number, line in enumerate(_text(path).splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if config.signal_type is not None:
            yield number, config.signal_type, line
            continue
        signal_type, _, value = line.strip().partition(" ")
        if not value.strip():
            raise BankError(
                f"{path}:{number}: expected '<signal_type> <signal>' (or set signal_type in "
                "the bank's YAML for bare signals)"
            )
        yield number, signal_type, value


def _csv_rows(path: Path) -> Iterator[tuple[int, str, str]]:
    reader = csv.DictReader(io.StringIO(_text(path), newline=""))
    missing = {"signal_type", "signal_str"} - set(reader.fieldnames or ())
    if missing:
        raise BankError(f"{path}:1: the header must name signal_type and signal_str columns")
    for row in reader:
        line = reader.line_num
        if row.get("signal_type") is None or row.get("signal_str") is None:
            raise BankError(f"{path}:{line}: fewer columns than the header")
        yield line, row["signal_type"].strip(), row["signal_str"]


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise BankError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise BankError(f"{path}: cannot be read: {exc.strerror}") from None
