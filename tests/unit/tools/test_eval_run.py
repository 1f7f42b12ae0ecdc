"""The evaluation flow on a deterministic classifier double: exact figures end to end.

The double implements the Classifier protocol with the test model's tokenizer. It decodes
each prompt built by the worker's own prompt code, reads back the policy text and the
content, and answers a fixed P("1") from a table, so every figure below is known in advance.
"""

from __future__ import annotations

import html.parser
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest
from rich.console import Console
from typer.testing import CliRunner

from worker.config import Settings
from worker.engine import EngineError, Score
from worker.tools.evaluate.command import EvalRequest, evaluate_sample, prepare, run_eval
from worker.tools.evaluate.document import build
from worker.tools.evaluate.errors import EvalError
from worker.tools.evaluate.evaluation import Targets
from worker.tools.evaluate.report import to_markdown
from worker.tools.evaluate.thresholds import Band

ALPHA = "Flag content of kind alpha."
ALPHA_V2 = "Flag content of kind alpha, second wording."
BETA = "Flag content of kind beta."

# The thresholds sample of test_eval_thresholds, as contents c0..c9 under policy alpha.
ALPHA_SCORES = [0.02, 0.08, 0.18, 0.32, 0.38, 0.52, 0.58, 0.72, 0.88, 0.98]
ALPHA_LABELS = [0, 0, 0, 1, 0, 0, 1, 1, 1, 1]
# The second wording moves three items: c3 up (now right), c4 up (now wrong), c7 down (wrong).
ALPHA_V2_SCORES = {**dict(enumerate(ALPHA_SCORES)), 3: 0.9, 4: 0.6, 7: 0.1}

TABLE: dict[str, dict[str, float]] = {
    ALPHA: {f"c{i}": s for i, s in enumerate(ALPHA_SCORES)}
    | {"pair ok": 0.9, "pair neg wrong": 0.9, "pair pos wrong": 0.1},
    ALPHA_V2: {f"c{i}": s for i, s in ALPHA_V2_SCORES.items()},
    BETA: {f"c{i}": 0.1 for i in range(10)}
    | {"b1": 0.9, "b2": 0.3, "pair ok": 0.1, "pair neg wrong": 0.8, "pair pos wrong": 0.2},
}
FAILING = "this content makes the engine fail"


class TableClassifier:
    """Answers P("1") looked up by (policy text, content) recovered from the prompt ids."""

    model_name = "table-double"

    def __init__(self, tokenizer, max_model_len: int = 400) -> None:
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.closed = False
        self.prompts: list[list[int]] = []

    async def score(self, prompt_token_ids: list[int]) -> Score:
        self.prompts.append(prompt_token_ids)
        text = self.tokenizer.decode(prompt_token_ids)
        policy = text.split("POLICY\n======\n\n", 1)[1].split("\n\n\nCONTENT\n=======\n\n")[0]
        content = text.split("\n\n\nCONTENT\n=======\n\n", 1)[1].rsplit("<end_of_turn>", 1)[0]
        if content == FAILING:
            raise EngineError("request failed")
        return Score(TABLE[policy][content], len(prompt_token_ids), 0)

    def close(self) -> None:
        self.closed = True


def _policy(directory: Path, policy_id: str, text: str, **front: float) -> Path:
    extra = "".join(f"{k}: {v}\n" for k, v in front.items())
    path = directory / f"{policy_id}.md"
    path.write_text(f"---\nid: {policy_id}\ntitle: {policy_id.title()}\n{extra}---\n{text}\n")
    return path


def _jsonl(path: Path, rows: list) -> Path:
    path.write_bytes(b"\n".join(r if isinstance(r, bytes) else orjson.dumps(r) for r in rows))
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> dict[str, Path]:
    policies = tmp_path / "policies"
    policies.mkdir()
    _policy(policies, "alpha", ALPHA, threshold=0.55)
    _policy(policies, "beta", BETA)
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    golden = [
        {"id": f"c{i}", "content": f"c{i}", "label": label} for i, label in enumerate(ALPHA_LABELS)
    ]
    golden += [
        {"id": "b1", "content": "b1", "label": 1, "policy": "beta"},
        {"id": "b2", "content": "b2", "label": 0, "policy": "beta"},
    ]
    pairs = [
        {"content": "pair ok", "policy_pos": "alpha", "policy_neg": "beta"},
        {"content": "pair neg wrong", "policy_pos": "alpha", "policy_neg": "beta"},
        {"content": "pair pos wrong", "policy_pos": "beta", "policy_neg": "alpha"},
    ]
    return {
        "policies": policies,
        "draft": _policy(drafts, "alpha", ALPHA_V2, threshold=0.55),
        "golden": _jsonl(tmp_path / "golden.jsonl", golden),
        "pairs": _jsonl(tmp_path / "pairs.jsonl", pairs),
        "out": tmp_path / "report",
    }


def _settings(workspace) -> Settings:
    return Settings(policies={"dir": workspace["policies"]}, engine={"max_retries": 0})


def _request(workspace, **kw) -> EvalRequest:
    fields = dict(
        dataset=workspace["golden"],
        policy="alpha",
        pairs=None,
        compare=None,
        out=workspace["out"],
        targets=Targets(),
    )
    return EvalRequest(**(fields | kw))


async def _evaluate(workspace, tokenizer, **kw):
    settings = _settings(workspace)
    request = _request(workspace, **kw)
    selection, sample = prepare(settings, request)
    quiet = Console(file=io.StringIO())
    classifier = TableClassifier(tokenizer)
    return await evaluate_sample(settings, request, classifier, selection, sample, quiet)


async def test_metrics_per_policy_and_overall(workspace, tokenizer):
    evaluation = await _evaluate(workspace, tokenizer)
    alpha, beta = evaluation.policies
    assert alpha.policy == "alpha" and beta.policy == "beta"
    assert alpha.band == Band(threshold=0.55, review_low=0.2, review_high=0.8)
    # >= 0.55 flags 0.58 .. 0.98 (all positive); 0.32 is the one missed positive.
    c = alpha.confusion
    assert (c.tp, c.fp, c.tn, c.fn) == (4, 0, 5, 1)
    assert (c.precision, c.recall, c.accuracy) == (1.0, 0.8, 0.9)
    assert c.f1 == pytest.approx(8 / 9)
    assert alpha.positives.count == 5 and alpha.negatives.count == 5
    assert alpha.positives.quantiles[0.5] == 0.72 and alpha.negatives.quantiles[1.0] == 0.52
    assert alpha.positives.histogram == [0, 0, 0, 1, 0, 1, 0, 1, 1, 1]
    # Current band [0.2, 0.8): 0.32, 0.38, 0.52, 0.58, 0.72 in review.
    assert alpha.current.review == 5 and alpha.current.errors == 0
    assert [i.score for i in alpha.items] == ALPHA_SCORES
    b = beta.confusion
    assert (b.tp, b.fp, b.tn, b.fn) == (1, 0, 1, 0)
    o = evaluation.overall
    assert o is not None and (o.tp, o.fp, o.tn, o.fn) == (5, 0, 6, 1)
    assert evaluation.bad_rows == [] and evaluation.model == "table-double"


async def test_threshold_suggestions_through_the_engine_path(workspace, tokenizer):
    targets = Targets(precision=0.9, recall=0.8, review_budget=0.1)
    evaluation = await _evaluate(workspace, tokenizer, targets=targets)
    alpha = evaluation.policies[0].suggestions
    assert alpha["precision"].band == Band(0.55, 0.2, 0.55)
    assert alpha["recall"].band == Band(0.55, 0.55, 0.55)
    assert alpha["review_budget"].band == Band(0.55, 0.5, 0.55)


async def test_steerability_figures(workspace, tokenizer):
    evaluation = await _evaluate(workspace, tokenizer, pairs=workspace["pairs"])
    result = evaluation.steerability
    assert result is not None
    s = result.summary
    assert (s.pairs, s.both_right, s.positive_right, s.negative_right) == (3, 1, 2, 2)
    assert s.pair_accuracy == pytest.approx(1 / 3)
    assert s.positive_accuracy == pytest.approx(2 / 3)
    assert s.negative_accuracy == pytest.approx(2 / 3)
    wrong = {r.pair.content for r in result.pairs if not (r.label_pos and not r.label_neg)}
    assert wrong == {"pair neg wrong", "pair pos wrong"}


async def test_comparison_lists_the_items_that_flip(workspace, tokenizer):
    evaluation = await _evaluate(workspace, tokenizer, compare=str(workspace["draft"]))
    c = evaluation.comparison
    assert c is not None and c.policy == "alpha"
    assert c.before_version != c.after_version
    flips = {(f.id, f.before_label, f.after_label) for f in c.flips}
    assert flips == {("c3", 0, 1), ("c4", 0, 1), ("c7", 1, 0)}
    assert (c.before.tp, c.before.fp, c.before.fn) == (4, 0, 1)
    # After: c3 now caught, c4 a false alarm, c7 missed.
    assert (c.after.tp, c.after.fp, c.after.tn, c.after.fn) == (4, 1, 4, 1)
    assert c.before.n == 10  # beta rows are not part of the comparison


async def test_comparison_with_an_id_from_the_directory(workspace, tokenizer):
    evaluation = await _evaluate(workspace, tokenizer, compare="beta")
    c = evaluation.comparison
    assert c is not None and c.after_name.startswith("beta (") and c.after_name.endswith("beta.md)")
    # Beta scores every c-item 0.1: the four items alpha flags (0.58 .. 0.98) flip to 0.
    assert sorted((f.id, f.before_label, f.after_label) for f in c.flips) == [
        ("c6", 1, 0),
        ("c7", 1, 0),
        ("c8", 1, 0),
        ("c9", 1, 0),
    ]


async def test_a_draft_file_as_policy_replaces_the_directory_version(workspace, tokenizer):
    evaluation = await _evaluate(workspace, tokenizer, policy=str(workspace["draft"]))
    alpha = evaluation.policies[0]
    assert [i.score for i in alpha.items] == [ALPHA_V2_SCORES[i] for i in range(10)]


async def test_bad_rows_are_counted_with_line_numbers_and_the_rest_is_scored(workspace, tokenizer):
    rows = [
        b'{"id": "c0", "content": "c0", "label": 0}',
        b"{oops",
        b'{"id": "c1", "content": "c1", "label": 3}',
        b'{"id": "x", "content": "' + FAILING.encode() + b'", "label": 1}',
        b'{"id": "long", "content": "' + b"word " * 500 + b'", "label": 0}',
        b'{"id": "c8", "content": "c8", "label": 1, "policy": "gamma"}',
        b'{"id": "c9", "content": "c9", "label": 1}',
    ]
    golden = _jsonl(workspace["golden"], rows)
    pairs = _jsonl(workspace["pairs"], [b'{"content": "pair ok"}'])
    evaluation = await _evaluate(workspace, tokenizer, dataset=golden, pairs=pairs)
    assert [i.id for i in evaluation.policies[0].items] == ["c0", "c9"]
    got = [(Path(b.source).name, b.line, b.reason.split(":")[0]) for b in evaluation.bad_rows]
    assert got == [
        ("golden.jsonl", 2, "invalid JSON"),
        ("golden.jsonl", 3, "label must be 0 or 1, got 3"),
        ("golden.jsonl", 4, "engine_error"),
        ("golden.jsonl", 5, "content_too_long"),
        ("golden.jsonl", 6, "unknown policy 'gamma' in policy"),
        ("pairs.jsonl", 1, "missing field(s)"),
    ]


async def test_run_eval_prints_writes_the_report_and_exits_1_on_bad_rows(workspace, tokenizer):
    _jsonl(
        workspace["pairs"],
        [
            {"content": "pair ok", "policy_pos": "alpha", "policy_neg": "beta"},
            b"not json",
        ],
    )
    classifier = TableClassifier(tokenizer)

    async def factory(settings):
        return classifier

    out, err = io.StringIO(), io.StringIO()
    request = _request(
        workspace,
        pairs=workspace["pairs"],
        compare=str(workspace["draft"]),
        targets=Targets(precision=0.9),
    )
    code = await run_eval(
        _settings(workspace), request, factory, Console(file=out, width=160), Console(file=err)
    )
    assert code == 1 and classifier.closed
    printed = out.getvalue()
    assert "Policy alpha: Alpha" in printed and "Steerability" in printed
    assert "review_high: 0.55" in printed  # the Helm snippet
    assert "pairs.jsonl" in printed and "invalid JSON" in printed
    assert "24/24" in err.getvalue()  # progress: 12 rows, 10 alpha rows compared, 1 pair x 2
    _check_report(workspace["out"])


def _check_report(out: Path) -> None:
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "pr-alpha.svg",
        "pr-beta.svg",
        "reliability-alpha.svg",
        "reliability-beta.svg",
        "report.html",
        "report.json",
        "report.md",
    ]
    for svg in out.glob("*.svg"):
        root = ET.fromstring(svg.read_text())
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    markdown = (out / "report.md").read_text()
    assert (
        "| items | positives | precision | recall | F1 | accuracy | average precision |" in markdown
    )
    assert (
        "| gold 1 | 4 | 1 |" in markdown and "![Precision-recall: alpha](pr-alpha.svg)" in markdown
    )
    assert "```yaml\n# target precision 0.9" in markdown
    tags = _html_tags((out / "report.html").read_text())
    assert tags.count("table") >= 10 and tags.count("svg") == 4 and tags.count("pre") == 1
    data = orjson.loads((out / "report.json").read_bytes())
    alpha = data["policies"][0]
    assert alpha["confusion"] == {
        "tp": 4,
        "fp": 0,
        "tn": 5,
        "fn": 1,
        "n": 10,
        "precision": 1.0,
        "recall": 0.8,
        "f1": pytest.approx(8 / 9),
        "accuracy": 0.9,
        "npv": pytest.approx(5 / 6),
    }
    assert alpha["suggestions"]["precision"]["band"] == {
        "threshold": 0.55,
        "review_low": 0.2,
        "review_high": 0.55,
    }
    assert data["steerability"]["summary"]["pair_accuracy"] == 1.0
    assert len(data["comparison"]["flips"]) == 3
    assert [(b["line"], b["reason"][:12]) for b in data["bad_rows"]] == [(2, "invalid JSON")]


def _html_tags(text: str) -> list[str]:
    """Start tags, after checking that every opened element is closed in order."""

    class Checker(html.parser.HTMLParser):
        VOID = {"meta", "br", "img", "line", "circle", "rect", "path"}

        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.seen: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.seen.append(tag)
            if tag not in self.VOID:
                self.stack.append(tag)

        def handle_startendtag(self, tag, attrs):
            self.seen.append(tag)

        def handle_endtag(self, tag):
            if tag in self.VOID:
                return
            assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
            self.stack.pop()

    checker = Checker()
    checker.feed(text)
    checker.close()
    assert checker.stack == [], f"unclosed: {checker.stack}"
    assert text.startswith("<!DOCTYPE html>")
    return checker.seen


async def test_problems_found_before_the_engine_starts(workspace):
    settings = _settings(workspace)
    with pytest.raises(EvalError, match="unknown policy 'gamma'"):
        prepare(settings, _request(workspace, policy="gamma"))
    with pytest.raises(EvalError, match="nothing to evaluate"):
        prepare(settings, _request(workspace, dataset=None))
    with pytest.raises(EvalError, match="cannot read"):
        prepare(settings, _request(workspace, dataset=workspace["out"] / "absent.jsonl"))
    _jsonl(workspace["golden"], [b"{bad", b'{"id": 1}'])
    with pytest.raises(EvalError, match="no usable rows: .*golden.jsonl:1: invalid JSON"):
        prepare(settings, _request(workspace))


def test_cli_eval_command(workspace, tokenizer, test_model, monkeypatch):
    from worker import app as worker_app
    from worker.cli import app

    async def factory(settings):
        assert settings.policies.dir == workspace["policies"]
        return TableClassifier(tokenizer)

    monkeypatch.setattr(worker_app, "start_classifier", factory)
    args = [
        "eval",
        "dataset",
        str(workspace["golden"]),
        "--policy",
        "alpha",
        "--policies",
        str(workspace["policies"]),
        "--model",  # the policies are checked with its tokenizer before the engine starts
        str(test_model),
        "--out",
        str(workspace["out"]),
        "--target-precision",
        "0.9",
        "--review-budget",
        "0.1",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "review_low: 0.2" in result.output and "review_low: 0.5" in result.output
    assert (workspace["out"] / "report.html").is_file()
    assert "deprecated" not in result.stderr

    (workspace["out"] / "report.html").unlink()
    old_form = ["eval", "--dataset", *args[2:]]
    result = CliRunner().invoke(app, old_form)
    assert result.exit_code == 0, result.output
    assert "review_low: 0.2" in result.output and (workspace["out"] / "report.html").is_file()
    assert result.stderr.splitlines()[0] == (
        'warning: "eval --dataset FILE" is deprecated; use "eval dataset FILE"'
    )

    result = CliRunner().invoke(app, [*args, "--policy", "gamma"])
    assert result.exit_code == 2 and "unknown policy 'gamma'" in result.output
    result = CliRunner().invoke(app, [*args, "--target-recall", "1.5"])
    assert result.exit_code == 2


async def test_rows_a_hash_bank_decides_are_shown_with_their_agreement(workspace, tokenizer):
    banks = workspace["out"].parent / "banks"
    banks.mkdir()
    (banks / "known.yaml").write_text("policies: [alpha]\nlabel: 1\nsignal_type: raw_text\n")
    (banks / "known.txt").write_text("c8\nc2\n")  # c8 is labelled 1, c2 is labelled 0
    (banks / "beta-good.yaml").write_text("policies: [beta]\nlabel: 0\nsignal_type: raw_text\n")
    (banks / "beta-good.txt").write_text("b2\nc8\n")  # c8's row is an alpha row: not decided
    settings = Settings(
        policies={"dir": workspace["policies"]}, engine={"max_retries": 0}, banks={"dir": banks}
    )
    request = _request(workspace)
    selection, sample = prepare(settings, request)
    evaluation = await evaluate_sample(
        settings,
        request,
        TableClassifier(tokenizer),
        selection,
        sample,
        Console(file=io.StringIO()),
    )
    got = [
        (c.id, c.policy, c.label, c.bank, c.bank_label, c.agrees) for c in evaluation.bank_checks
    ]
    assert got == [
        ("c2", "alpha", 0, "known", 1, False),
        ("c8", "alpha", 1, "known", 1, True),
        ("b2", "beta", 0, "beta-good", 0, True),
    ]
    # The model's figures still cover every row.
    assert sum(len(p.items) for p in evaluation.policies) == 12
    text = to_markdown(build(evaluation))
    assert "## Hash banks" in text and "Rows decided by a hash bank: 3." in text
    assert "| known | 2 | 1 | 1 |" in text and "| beta-good | 1 | 1 | 0 |" in text


async def test_rows_with_media_are_decided_by_their_pictures_as_the_worker_decides(
    workspace, tokenizer
):
    from worker.hashbanks.signals import image_pdq
    from worker.testing import media_samples as samples

    banned, meme, unknown = samples.picture(), samples.picture(seed=5), samples.picture(seed=7)
    pictures = {"banned": banned, "meme": meme, "unknown": unknown}
    for name, data in {**pictures, "corrupt": samples.corrupt_jpeg()}.items():
        (workspace["out"].parent / f"{name}.png").write_bytes(data)
    banks = workspace["out"].parent / "banks"
    banks.mkdir()
    (banks / "removed.yaml").write_text("policies: [alpha]\nlabel: 1\n")
    (banks / "removed.txt").write_text(f"pdq {image_pdq(banned)[0]}\n")
    (banks / "memes.yaml").write_text("policies: [alpha]\nlabel: 0\n")
    (banks / "memes.txt").write_text(f"pdq {image_pdq(meme)[0]}\nraw_text c0\n")

    def row(id_, label, *files, content=None):
        media = [{"type": "image", "path": f"{name}.png"} for name in files]
        text = {"content": content} if content else {}
        return {"id": id_, "label": label, **text, "media": media}

    golden = _jsonl(
        workspace["out"].parent / "media.jsonl",
        [
            row("m-banned", 1, "banned"),  # a known-bad picture decides
            row("m-meme", 1, "meme"),  # known good, and the bank disagrees with the label
            row("m-caption", 0, "unknown", content="c0"),  # a good caption, a new picture
            row("m-both", 0, "meme", content="c0"),  # every part known good
            row("m-corrupt", 1, "corrupt"),  # its media fail: never decided
        ],
    )
    settings = Settings(
        policies={"dir": workspace["policies"]}, engine={"max_retries": 0}, banks={"dir": banks}
    )
    request = _request(workspace, dataset=golden)
    selection, sample = prepare(settings, request)
    quiet = Console(file=io.StringIO())
    evaluation = await evaluate_sample(
        settings, request, TableClassifier(tokenizer), selection, sample, quiet
    )
    got = [(c.id, c.bank, c.bank_label, c.agrees) for c in evaluation.bank_checks]
    assert got == [
        ("m-banned", "removed", 1, True),
        ("m-meme", "memes", 0, False),
        ("m-both", "memes", 0, True),
    ]
    shown = {c.id: c.content for c in evaluation.bank_checks}
    assert shown["m-both"] == "c0 [image: meme.png]"


async def test_without_banks_the_report_has_no_bank_section(workspace, tokenizer):
    evaluation = await _evaluate(workspace, tokenizer)
    assert evaluation.bank_checks is None
    assert "Hash banks" not in to_markdown(build(evaluation))
