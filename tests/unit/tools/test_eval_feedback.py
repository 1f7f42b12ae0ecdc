"""eval decisions on files: the join, the weighted figures and the report, no broker."""

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from rich.console import Console

from worker.config import Settings
from worker.tools.evaluate.evaluation import Targets
from worker.tools.evaluate.feedback import join, parse_decisions, parse_review_records
from worker.tools.evaluate.feedback_command import FeedbackRequest, run_feedback
from worker.tools.evaluate.records import Raw

T0 = datetime(2026, 11, 23, tzinfo=UTC)


def review(item: str, label: int, score: float, origin: str, rate: float | None = None) -> dict:
    return {
        "id": item,
        "label": label,
        "route": "review" if origin == "review_band" else "auto",
        "verdicts": [
            {"policy": "fruit", "policy_version": "v1", "label": label, "score": score,
             "confidence": 0.9}
        ],
        "origin": origin,
        "audit_rates": {"fruit": rate} if rate else {},
    }  # fmt: skip


def decision(item: str, value: int, minutes: int = 0, **extra) -> dict:
    at = (T0 + timedelta(minutes=minutes)).isoformat()
    return {"id": item, "policy": "fruit", "decision": value, "reviewer": "r1",
            "decided_at": at, **extra}  # fmt: skip


def lines(records: list) -> bytes:
    return b"\n".join(r if isinstance(r, bytes) else orjson.dumps(r) for r in records) + b"\n"


def test_the_latest_decision_wins_and_versions_must_match():
    reviewed, _ = parse_review_records(
        [Raw(orjson.dumps(review("a", 1, 0.9, "review_band")), "f:1")]
    )
    decisions, _ = parse_decisions(
        Raw(orjson.dumps(d), "d") for d in [
            decision("a", 0, 5), decision("a", 1, 1), decision("b", 1),
            {**decision("a", 1, 0), "policy": "nature"},
        ]
    )  # fmt: skip
    answered, unmatched = join(decisions, reviewed)
    assert [a.decision.decision for a in answered] == [0]
    assert sorted((u.id, u.policy) for u in unmatched) == [("a", "nature"), ("b", "fruit")]
    stale, _ = parse_decisions([Raw(orjson.dumps(decision("a", 1, policy_version="v0")), "d")])
    _, unmatched = join(stale, reviewed)
    assert "policy version" in unmatched[0].reason


def test_report_on_files(tmp_path):
    # Flagged items audited at 50 %: 40 reviewed, 36 confirmed. Cleared items audited at 10 %:
    # 50 reviewed, 5 positives among them. Band: 10 items, 7 agreements.
    reviews, decisions = [], []
    for i in range(40):
        reviews.append(review(f"p{i}", 1, 0.95, "audit_sample", 0.5))
        decisions.append(decision(f"p{i}", 1 if i < 36 else 0))
    for i in range(50):
        reviews.append(review(f"n{i}", 0, 0.05, "audit_sample", 0.1))
        decisions.append(decision(f"n{i}", 1 if i < 5 else 0))
    for i in range(10):
        reviews.append(review(f"b{i}", 1, 0.6, "review_band"))
        decisions.append(decision(f"b{i}", 1 if i < 7 else 0))
    (tmp_path / "reviews.jsonl").write_bytes(lines(reviews))
    (tmp_path / "decisions.jsonl").write_bytes(lines([*decisions, b"{broken", decision("zz", 1)]))
    request = FeedbackRequest(
        str(tmp_path / "decisions.jsonl"),
        str(tmp_path / "reviews.jsonl"),
        tmp_path / "report",
        Targets(precision=0.8),
    )
    console = Console(record=True, width=200)
    code = asyncio.run(run_feedback(Settings(), request, console))
    assert code == 1  # the broken line is listed

    data = orjson.loads((tmp_path / "report" / "report.json").read_bytes())
    (fruit,) = data["policies"]
    assert fruit["precision"]["value"] == pytest.approx(36 / 40)
    assert fruit["npv"]["value"] == pytest.approx(45 / 50)
    # 36 confirmed positives weigh 2 each, 5 missed ones 10 each.
    assert fruit["recall"]["value"] == pytest.approx(72 / (72 + 50))
    assert fruit["recall"]["low"] < 72 / 122 < fruit["recall"]["high"]
    assert fruit["agreement"]["value"] == pytest.approx(0.7)
    assert [u["id"] for u in data["unmatched"]] == ["zz"]
    assert data["bad_rows"][0]["line"] == 101 and "invalid_json" in data["bad_rows"][0]["reason"]
    assert data["dead_lettered"] == 0  # a file has no dead-letter topic
    band = fruit["suggestions"]["precision"]["band"]
    assert 0.05 < band["review_high"] <= 0.95
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "routing:" in markdown and "fruit:" in markdown and "Wilson" in markdown
    assert (tmp_path / "report" / "reliability-fruit.svg").exists()
    assert "precision (label 1 confirmed)" in console.export_text()


def test_bank_decisions_under_review_have_no_score_to_calibrate_with():
    record = {
        "id": "a",
        "route": "review",
        "origin": "review_band",
        "verdicts": [
            {
                "policy": "fruit",
                "policy_version": "v1",
                "label": 1,
                "score": None,
                "confidence": None,
                "source": "hash_match",
                "match": {"bank": "removed", "signal_type": "pdq", "distance": 3},
            },
            {
                "policy": "nature",
                "policy_version": "v2",
                "label": 0,
                "score": 0.3,
                "confidence": 0.7,
                "source": "model",
                "match": None,
            },
        ],  # fmt: skip
    }
    reviewed, bad = parse_review_records([Raw(orjson.dumps(record), "f:1")])
    assert bad == [] and list(reviewed) == [("a", "nature")]
