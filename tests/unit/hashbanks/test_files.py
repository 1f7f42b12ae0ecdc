"""The bank directory format: YAML per bank, signal files in the library's formats, and one
line naming the file and line for any bad entry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from worker.hashbanks import BankError, load_banks
from worker.hashbanks.files import read_directory
from worker.hashbanks.signals import text_key, url_key

PDQ_A = "f" * 64
PDQ_B = "0" * 63 + "1"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def _hex(codes) -> list[str]:
    return [row.tobytes().hex() for row in codes]


def _bank(directory: Path, name: str, config: str, **signals: str) -> None:
    (directory / f"{name}.yaml").write_text(config)
    for suffix, body in signals.items():
        (directory / f"{name}.{suffix.replace('_', '.')}").write_text(body)


def test_txt_lines_name_their_type_as_the_library_writes_them(tmp_path):
    _bank(
        tmp_path,
        "known-bad",
        "policies: [spam]\nlabel: 1\nroute: review\n",
        txt=f"# exported list\n\npdq {PDQ_A}\nvideo_md5 {MD5.upper()}\n"
        "raw_text buy cheap pills now\nurl HTTPS://Spam.example/offer\n",
    )
    [(bank, signals)] = read_directory(tmp_path)
    assert (bank.name, bank.policies, bank.label, bank.route) == (
        "known-bad",
        ("spam",),
        1,
        "review",
    )
    assert _hex(signals.pdq) == [PDQ_A]
    assert [(e.signal_type, e.key) for e in signals.entries] == [
        ("video_md5", MD5),  # normalized by the library: lowercase
        ("raw_text", text_key("buy cheap pills now")),
        ("url", url_key("https://spam.example/offer")),
    ]


def test_bare_lines_take_the_banks_signal_type(tmp_path):
    _bank(tmp_path, "memes", "policies: [spam]\nlabel: 0\nsignal_type: pdq\n", txt=f"{PDQ_B}\n")
    [(bank, signals)] = read_directory(tmp_path)
    assert bank.route == "auto" and _hex(signals.pdq) == [PDQ_B] and signals.entries == []


def test_csv_as_the_threatexchange_cli_exports_it(tmp_path):
    digest = hashlib.sha256(b"a known text").hexdigest()
    _bank(
        tmp_path,
        "shared",
        "policies: [spam]\nlabel: 1\n",
        csv="signal_type,signal_str,collab,category,tags\n"
        f"pdq,{PDQ_A},Sample,,\ntext_sha256,{digest},Sample,,\n"
        '"raw_text","two\nlines",Sample,,\n',
    )
    [(_, signals)] = read_directory(tmp_path)
    assert _hex(signals.pdq) == [PDQ_A]
    assert [(e.signal_type, e.key) for e in signals.entries] == [
        ("text_sha256", digest),
        ("raw_text", text_key("two\nlines")),
    ]


def test_a_bank_may_be_split_over_files(tmp_path):
    _bank(
        tmp_path, "big", "policies: [spam]\nlabel: 1\nsignal_type: pdq\n",
        part1_txt=f"{PDQ_A}\n", part2_txt=f"{PDQ_B}\n",
    )  # fmt: skip
    assert len(load_banks(tmp_path, 31)) == 1
    assert load_banks(tmp_path, 31).counts == {("big", "pdq"): 2}


@pytest.mark.parametrize(
    ("body", "where", "why"),
    [
        (f"pdq {PDQ_A}\npdq 12345\n", "big.txt:2", "invalid PDQ hash: '12345'"),
        (f"pdq {PDQ_A}\npdq {PDQ_A.upper()}\n", "big.txt:2", "invalid PDQ hash"),
        (f"pdq {PDQ_A[:-1]}\npdq {PDQ_B}0\n", "big.txt:1", "invalid PDQ hash"),
        (f"pdq {PDQ_A}\n\nvpdq {PDQ_A}\n", "big.txt:3", "signal type 'vpdq' is not supported"),
        ("video_md5 not-a-digest\n", "big.txt:1", "MD5"),
        ("text_sha256 abc\n", "big.txt:1", "not a sha256"),
        ("pdq\n", "big.txt:1", "expected '<signal_type> <signal>'"),
    ],
)
def test_a_bad_entry_names_file_and_line(tmp_path, body, where, why):
    _bank(tmp_path, "big", "policies: [spam]\nlabel: 1\n", txt=body)
    with pytest.raises(BankError) as info:
        load_banks(tmp_path, 31)
    message = str(info.value)
    assert "\n" not in message and where in message and why in message, message


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ("policies: []\nlabel: 1\n", "policies"),
        ("policies: [spam]\nlabel: 2\n", "label"),
        ("policies: [spam]\nlabel: 1\nroute: later\n", "route"),
        ("policies: [spam]\nlabel: 1\nlabels: 1\n", "labels"),
        ("policies: [spam\nlabel: 1\n", "not valid YAML"),
        ("policies: [spam]\nlabel: 1\nsignal_type: tmk\n", "'tmk' is not supported"),
    ],
)
def test_a_bad_bank_config_names_the_file(tmp_path, config, why):
    _bank(tmp_path, "bank", config)
    with pytest.raises(BankError) as info:
        load_banks(tmp_path, 31)
    assert "bank.yaml" in str(info.value) and why in str(info.value)
    assert "\n" not in str(info.value)


def test_signals_without_a_bank_config_are_refused(tmp_path):
    (tmp_path / "orphan.txt").write_text(f"pdq {PDQ_A}\n")
    with pytest.raises(BankError, match=r"orphan\.txt: no bank orphan\.yaml"):
        load_banks(tmp_path, 31)


def test_csv_without_the_columns_is_refused(tmp_path):
    _bank(tmp_path, "b", "policies: [spam]\nlabel: 1\n", csv=f"type,hash\npdq,{PDQ_A}\n")
    with pytest.raises(BankError, match=r"b\.csv:1: the header must name"):
        load_banks(tmp_path, 31)


def test_other_files_and_configmap_links_are_ignored(tmp_path):
    _bank(tmp_path, "b", "policies: [spam]\nlabel: 1\n", txt=f"pdq {PDQ_A}\n")
    (tmp_path / "README.md").write_text("# our banks\n")
    (tmp_path / "..data").mkdir()
    assert [bank.name for bank in load_banks(tmp_path, 31).banks] == ["b"]


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(BankError, match="does not exist"):
        load_banks(tmp_path / "nowhere", 31)
