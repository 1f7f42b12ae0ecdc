"""The ``eval`` command line: a subcommand per mode, each with its own help, and the flag
forms from before the subcommands rewritten to them with a one-line warning."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from worker.cli import app
from worker.tools.evaluate.cli import rewrite_old_form

from .test_eval_feedback import decision, lines, review


@pytest.mark.parametrize(
    "old, new, warning",
    [
        (
            ["--dataset", "g.jsonl", "--policy", "p", "--out", "r"],
            ["dataset", "g.jsonl", "--policy", "p", "--out", "r"],
            ("--dataset FILE", "dataset FILE"),
        ),
        (
            ["--policy", "p", "-d", "g.jsonl"],
            ["dataset", "g.jsonl", "--policy", "p"],
            ("--dataset FILE", "dataset FILE"),
        ),
        (
            ["--contrastive", "pairs.jsonl"],
            ["dataset", "--contrastive", "pairs.jsonl"],
            ("--contrastive PAIRS", "dataset --contrastive PAIRS"),
        ),
        (
            ["--policy", "p"],
            ["dataset", "--policy", "p"],
            ("OPTIONS", "dataset OPTIONS"),
        ),
        (
            ["--out", "r", "--shadow", "kafka:shadow"],
            ["shadow", "kafka:shadow", "--out", "r"],
            ("--shadow SOURCE", "shadow SOURCE"),
        ),
        (
            ["--decisions=decisions", "--verdicts", "review", "--target-precision", "0.9"],
            ["decisions", "decisions", "--verdicts", "review", "--target-precision", "0.9"],
            ("--decisions SOURCE", "decisions SOURCE"),
        ),
    ],
)
def test_old_forms_become_their_subcommand(old, new, warning):
    assert rewrite_old_form(old) == (new, *warning)


@pytest.mark.parametrize(
    "mode, says",
    [
        ("dataset", ["[dataset]", "--contrastive", "--compare", "--target-precision"]),
        ("shadow", ["{source}", "kafka:TOPIC", "--out"]),
        ("decisions", ["{source}", "--verdicts", "--target-recall"]),
    ],
)
def test_each_subcommand_has_its_own_help(mode, says):
    result = CliRunner().invoke(app, ["eval", mode, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for text in says:
        assert text in result.output, text
    others = {"dataset": "--verdicts", "shadow": "--policy", "decisions": "--contrastive"}
    assert others[mode] not in result.output


def test_eval_lists_its_subcommands():
    result = CliRunner().invoke(app, ["eval", "--help"], terminal_width=200)
    assert result.exit_code == 0 and "deprecated" not in result.output
    for mode in ("dataset", "shadow", "decisions"):
        assert f" {mode} " in result.output


def _files(tmp_path: Path) -> tuple[Path, Path]:
    reviews = [review(f"p{i}", 1, 0.95, "audit_sample", 0.5) for i in range(4)]
    decisions = [decision(f"p{i}", 1) for i in range(4)]
    (tmp_path / "reviews.jsonl").write_bytes(lines(reviews))
    (tmp_path / "decisions.jsonl").write_bytes(lines(decisions))
    return tmp_path / "decisions.jsonl", tmp_path / "reviews.jsonl"


def test_eval_decisions_on_files_new_and_old_form(tmp_path: Path):
    decisions, reviews = _files(tmp_path)
    new = ["eval", "decisions", str(decisions), "--verdicts", str(reviews)]
    result = CliRunner().invoke(app, [*new, "--out", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    data = orjson.loads((tmp_path / "new" / "report.json").read_bytes())
    assert data["policies"][0]["precision"]["value"] == 1.0

    old = ["eval", "--decisions", str(decisions), "--verdicts", str(reviews)]
    result = CliRunner().invoke(app, [*old, "--out", str(tmp_path / "old")])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        'warning: "eval --decisions SOURCE" is deprecated; use "eval decisions SOURCE"'
    ]
    again = orjson.loads((tmp_path / "old" / "report.json").read_bytes())
    assert again["policies"] == data["policies"]


def test_old_form_mixing_modes_is_refused():
    result = CliRunner().invoke(app, ["eval", "--decisions", "d", "--dataset", "g.jsonl"])
    assert result.exit_code == 2
    assert "pass either --decisions or --dataset/--contrastive, not both" in result.stderr
