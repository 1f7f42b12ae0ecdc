"""The Grafana dashboard and docs/observability.md name exactly the metrics the worker exposes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.engine import Score
from worker.events import ContentEvent, Latency, PolicyVerdict, Source, Verdict
from worker.hashbanks import Bank, Decision, Match
from worker.media import observe as media_metrics
from worker.observability import gauges, metrics
from worker.scoring.classify import Job, Scored
from worker.scoring.shadow import ShadowRecord

REPO = Path(__file__).resolve().parents[3]
DASHBOARD = REPO / "deploy" / "grafana" / "moderation-worker.json"
DOCS = REPO / "docs" / "observability.md"
SUFFIXES = ("_bucket", "_sum", "_count", "_total")


def _base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


class _Stats:
    kv_cache_usage = 0.1
    running = 1
    waiting = 0


@pytest.fixture(scope="module")
def exposed() -> set[str]:
    """Family names of every worker metric, each made to report at least once."""
    metrics.setup_metrics()
    job = Job(ContentEvent(id="d", content="x"), [], received=0.0)
    metrics.record_batch(
        [Scored(job, scores=[Score(0.5, 10, 5)], started=1.0, finished=2.0)], verdict_cache=True
    )
    verdict = Verdict(
        id="d",
        label=0,
        route="auto",
        verdicts=[
            PolicyVerdict(policy="dash", policy_version="h", label=0, score=0.1, confidence=0.9)
        ],
        model="m",
        source=Source(topic="t", partition=0, offset=0),
        metadata={},
        latency_ms=Latency(queue=0, inference=0, total=0),
        classified_at=datetime.now(UTC),
    )
    metrics.record_verdicts([verdict])
    metrics.record_shadow([_shadow_record()])
    metrics.record_end_to_end(datetime.now(UTC))
    metrics.record_consumed("dash")
    metrics.record_dead_letter("dash")
    metrics.record_policy_reload(ok=True)
    bank = Bank("dash", ("dash",), 1, "auto", Path("dash.yaml"))
    matched = Job(ContentEvent(id="h", content="x"), [], matches=(Match(bank, "pdq", 3),))
    matched.decided = {"dash": Decision(1, "auto", matched.matches[0])}
    metrics.record_hash_matches([Scored(matched, scores=[])])
    metrics.record_bank_reload(ok=True)
    media_metrics.record_item("image", "url", "ok", 0.01, 100)
    media_metrics.record_failure("media_rejected", "too_large")
    worker_gauges = metrics.WorkerGauges()
    worker_gauges.lag = {("dash", 0): 1}
    stats = _Stats()
    metrics.watch_engine(stats)
    try:
        text = generate_latest(REGISTRY).decode()
    finally:
        worker_gauges.close()
        gauges._engines.discard(stats)
    return {
        family.name
        for family in text_string_to_metric_families(text)
        if family.name.startswith("moderation_")
    }


def _shadow_record() -> ShadowRecord:
    return ShadowRecord(
        id="d",
        production_policy="dash",
        production_version="h",
        production_score=0.1,
        production_label=0,
        shadow_policy="dash-draft",
        shadow_version="h2",
        shadow_score=0.9,
        shadow_label=1,
        disagree=True,
        flip="0->1",
        model="m",
        source=Source(topic="t", partition=0, offset=0),
        classified_at=datetime.now(UTC),
    )


def _dashboard_metrics(dashboard: dict) -> set[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return {_base(m) for expr in exprs for m in re.findall(r"\bmoderation_[a-z_]+", expr)}


def test_every_exposed_metric_is_on_the_dashboard_and_nothing_else(exposed) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert len(exposed) == 26
    assert _dashboard_metrics(dashboard) == {_base(n) for n in exposed}


def test_dashboard_is_well_formed(exposed) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert '{job=~"$job", pod=~"$pod"' in target["expr"], panel["title"]
    # No two panels overlap on the grid.
    cells = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine


def test_docs_describe_every_exposed_metric(exposed) -> None:
    text = DOCS.read_text()
    for family in exposed:
        sample = family + "_total" if f"`{family}_total`" in text else family
        assert f"`{sample}`" in text, family
