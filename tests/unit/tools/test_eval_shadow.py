"""``eval shadow``: counting what a draft would change, from a file of shadow records."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
from typer.testing import CliRunner

from worker.cli import app
from worker.events import Source
from worker.scoring.shadow import ShadowRecord, flip
from worker.tools.evaluate.shadow import compare, render


def _record(item_id: str, prod: int, shadow: int, shadow_version: str = "s1") -> ShadowRecord:
    return ShadowRecord(
        id=item_id,
        production_policy="fruit",
        production_version="p1",
        production_score=0.9 if prod else 0.1,
        production_label=prod,
        shadow_policy="fruit-draft",
        shadow_version=shadow_version,
        shadow_score=0.9 if shadow else 0.1,
        shadow_label=shadow,
        disagree=prod != shadow,
        flip=flip(prod, shadow),
        model="m",
        source=Source(topic="content", partition=0, offset=int(item_id.split("-")[1])),
        classified_at=datetime.now(UTC),
    )


RECORDS = [
    *(_record(f"a-{n}", 1, 0) for n in range(3)),
    *(_record(f"b-{n}", 0, 1) for n in range(10, 17)),
    *(_record(f"c-{n}", 1, 1) for n in range(20, 30)),
    _record("a-0", 1, 0),  # redelivered: counted once
    _record("d-40", 0, 0, shadow_version="s2"),  # the draft was edited: a pair of its own
]


def test_compare_counts_flips_once_per_event_and_version():
    first, second = compare(RECORDS, examples=2)
    assert (first.shadow_version, first.events, first.changed) == ("s1", 20, 10)
    assert first.flips == {"0->1": 7, "1->0": 3}
    assert first.agreement == 0.5
    assert [r.id for r in first.examples["1->0"]] == ["a-0", "a-1"]
    assert len(first.examples["0->1"]) == 2
    assert (second.shadow_version, second.events, second.changed) == ("s2", 1, 0)
    text = render([first])
    assert "decisions changed 10 (50.00%)" in text and "1->0 a-1" in text


def test_eval_shadow_reads_a_file_and_writes_the_comparison(tmp_path: Path):
    source = tmp_path / "shadow.jsonl"
    source.write_bytes(b"\n".join(r.to_json() for r in RECORDS) + b"\n")
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", "shadow", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "flips 0->1 (would flag): 7; 1->0 (would clear): 3" in result.output
    written = orjson.loads((out / "shadow-comparison.json").read_bytes())
    assert [p["changed"] for p in written] == [10, 0]


def test_eval_shadow_in_its_old_form_still_runs_and_says_what_to_type(tmp_path: Path):
    source = tmp_path / "shadow.jsonl"
    source.write_bytes(b"\n".join(r.to_json() for r in RECORDS) + b"\n")
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", "--out", str(out), f"--shadow={source}"])
    assert result.exit_code == 0, result.output
    assert "flips 0->1 (would flag): 7; 1->0 (would clear): 3" in result.stdout
    assert (
        result.stderr == 'warning: "eval --shadow SOURCE" is deprecated; use "eval shadow SOURCE"\n'
    )
    assert (out / "shadow-comparison.json").is_file()


def test_eval_shadow_names_a_bad_line(tmp_path: Path):
    source = tmp_path / "shadow.jsonl"
    source.write_bytes(RECORDS[0].to_json() + b'\n{"id": "x"}\n')
    result = CliRunner().invoke(app, ["eval", "shadow", str(source)])
    assert result.exit_code == 1
    assert f"{source}:2: not a shadow record" in result.output
    missing = CliRunner().invoke(app, ["eval", "shadow", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 1 and "does not exist" in missing.output
