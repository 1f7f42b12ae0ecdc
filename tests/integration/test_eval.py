"""``moderation-worker eval`` on the real CPU engine with the policy-following test model.

The test model answers "1" exactly when the content names a trigger word that the policy
names, so gold labels follow from the text and every figure is known: accuracy 1.0,
steerability 1.0, and a policy edit flips exactly the items that use the changed words.
"""

from __future__ import annotations

import html.parser
import io
import os
import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from worker.config import Settings
from worker.testing.devmodel import FILLER_WORDS, TRIGGER_WORDS
from worker.tools.evaluate.command import EvalRequest, evaluate_sample, prepare
from worker.tools.evaluate.evaluation import Targets
from worker.tools.evaluate.report import write_report

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "tests" / "policies"
WORDS = {"fruit": ("apple", "mango"), "nature": ("river", "meadow"), "tools": ("anchor", "compass")}
NAMED = {w for words in WORDS.values() for w in words}
OTHER = [w for w in TRIGGER_WORDS if w not in NAMED and w != "walnut"]
# The edited fruit policy drops mango and adds walnut.
FRUIT_V2 = (
    "---\nid: fruit\ntitle: Fruit v2\n---\nFlag content that mentions any of: apple, walnut.\n"
)


def _text(rng: random.Random, *triggers: str) -> str:
    words = [rng.choice(FILLER_WORDS) for _ in range(rng.randint(3, 30))]
    for trigger in triggers:
        words.insert(rng.randint(0, len(words)), trigger)
    return " ".join(words)


def _golden(rng: random.Random) -> tuple[list[bytes], set[str]]:
    """Rows for fruit (the default policy) and nature; and the ids the v2 edit flips."""
    rows, flips = [], set()
    for i in range(30):
        kind = i % 3
        trigger = {0: rng.choice(WORDS["fruit"]), 1: rng.choice(OTHER), 2: "walnut"}[kind]
        row = {"id": f"f{i}", "content": _text(rng, trigger), "label": int(kind == 0)}
        rows.append(orjson.dumps(row))
        if trigger in ("mango", "walnut"):
            flips.add(row["id"])
    for i in range(10):
        trigger = rng.choice(WORDS["nature"]) if i % 2 else rng.choice(WORDS["fruit"] + ("otter",))
        row = {"id": f"n{i}", "content": _text(rng, trigger), "label": i % 2, "policy": "nature"}
        rows.append(orjson.dumps(row))
    rows.insert(5, b'{"id": "broken", "label": 1')  # line 6
    rows.append(orjson.dumps({"id": "huge", "content": "word " * 5000, "label": 0}))  # line 42
    return rows, flips


def _pairs(rng: random.Random) -> list[bytes]:
    pairs = []
    for i in range(12):
        pos, neg, third = rng.sample(sorted(WORDS), 3)
        # Half the contents also name a word of a third policy: neither side may react to it.
        extra = [rng.choice(WORDS[third])] if i % 2 else []
        content = _text(rng, rng.choice(WORDS[pos]), *extra)
        pairs.append(orjson.dumps({"content": content, "policy_pos": pos, "policy_neg": neg}))
    return pairs


async def test_eval_on_the_cpu_engine(engine, tmp_path: Path):
    rng = random.Random(11)
    golden, expected_flips = _golden(rng)
    (tmp_path / "golden.jsonl").write_bytes(b"\n".join(golden))
    (tmp_path / "pairs.jsonl").write_bytes(b"\n".join(_pairs(rng)))
    (tmp_path / "fruit-v2.md").write_text(FRUIT_V2)
    settings = Settings(policies={"dir": POLICIES})
    request = EvalRequest(
        dataset=tmp_path / "golden.jsonl",
        policy="fruit",
        pairs=tmp_path / "pairs.jsonl",
        compare=str(tmp_path / "fruit-v2.md"),
        out=tmp_path / "report",
        targets=Targets(precision=0.95, recall=0.95, review_budget=0.05),
    )
    selection, sample = prepare(settings, request)
    err = io.StringIO()
    evaluation = await evaluate_sample(
        settings, request, engine, selection, sample, Console(file=err)
    )

    fruit, nature = evaluation.policies
    assert (fruit.policy, fruit.confusion.n, nature.confusion.n) == ("fruit", 30, 10)
    for result in (fruit, nature):
        assert result.confusion.accuracy == 1.0, result.items
        assert result.positives.quantiles[0.0] > 0.9 and result.negatives.quantiles[1.0] < 0.1
        for suggestion in result.suggestions.values():
            assert suggestion is not None
            assert suggestion.outcome.review == 0 and suggestion.outcome.errors == 0
    assert evaluation.overall is not None and evaluation.overall.accuracy == 1.0

    steer = evaluation.steerability
    assert steer is not None and steer.summary.pairs == 12
    assert steer.summary.pair_accuracy == 1.0

    comparison = evaluation.comparison
    assert comparison is not None and comparison.before.accuracy == 1.0
    assert {f.id for f in comparison.flips} == expected_flips
    assert all(f.after_label != f.label for f in comparison.flips)  # each edit made it wrong

    assert [(b.line, b.reason.split(":")[0]) for b in evaluation.bad_rows] == [
        (6, "invalid JSON"),
        (42, "content_too_long"),
    ]
    # Progress counts every prompt: 41 rows (with "huge"), 31 fruit rows again, 12 pairs x 2.
    assert "96/96" in err.getvalue()
    _check_report(write_report(evaluation, tmp_path / "report"))


def _check_report(paths: list[Path]) -> None:
    by_name = {p.name: p for p in paths}
    assert set(by_name) == {
        "report.md",
        "report.html",
        "report.json",
        "pr-fruit.svg",
        "pr-nature.svg",
        "reliability-fruit.svg",
        "reliability-nature.svg",
    }
    for name, path in by_name.items():
        if name.endswith(".svg"):
            assert ET.fromstring(path.read_text()).tag == "{http://www.w3.org/2000/svg}svg"
    markdown = by_name["report.md"].read_text()
    assert "| gold 1 | 10 | 0 |" in markdown  # fruit's confusion matrix
    assert "| before | 1.000 | 1.000 |" in markdown
    assert "```yaml\n# target precision 0.95" in markdown
    tags = _tags(by_name["report.html"].read_text())
    assert tags.count("svg") == 4 and tags.count("table") > 10
    data = orjson.loads(by_name["report.json"].read_bytes())
    assert data["steerability"]["summary"]["pair_accuracy"] == 1.0


def _tags(text: str) -> list[str]:
    seen: list[str] = []

    class Collector(html.parser.HTMLParser):
        def handle_starttag(self, tag, attrs):
            seen.append(tag)

    parser = Collector()
    parser.feed(text)
    parser.close()
    return seen


ENGINE_LOG = '"logger": "vllm.'  # vLLM's log lines, as the worker's JSON log writes them


def test_eval_command_line_end_to_end(test_model, tmp_path: Path):
    """The installed console script on the example files, with its own engine."""
    examples = REPO / "examples" / "eval" / "test-model"
    env = os.environ | {
        "WORKER_ENGINE__MAX_MODEL_LEN": "4096",
        "WORKER_ENGINE__EXTRA_ARGS": '{"enforce_eager": true, "block_size": 32}',
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    command = [
        str(Path(sys.executable).with_name("moderation-worker")),
        "eval",
        "dataset",
        str(examples / "golden.jsonl"),
        "--model",
        str(test_model),
        "--policies",
        str(POLICIES),
        "--policy",
        "fruit",
        "--contrastive",
        str(examples / "pairs.jsonl"),
        "--compare",
        str(examples / "fruit-v2.md"),
        "--target-precision",
        "0.95",
        "--out",
        str(tmp_path / "report"),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    # stdout carries only the results: engine logs go to stderr.
    assert done.stdout.lstrip().splitlines()[0].count("Policy evaluation") == 1
    assert ENGINE_LOG not in done.stdout
    assert ENGINE_LOG in done.stderr, "expected the engine's own log lines on stderr"
    assert "review_high: 0.5" in done.stdout
    data = orjson.loads((tmp_path / "report" / "report.json").read_bytes())
    assert [p["confusion"]["accuracy"] for p in data["policies"]] == [1.0, 1.0]
    assert data["steerability"]["summary"]["pair_accuracy"] == 1.0
    flips = {f["id"] for f in data["comparison"]["flips"]}
    assert flips == {"fruit-02", "fruit-04", "fruit-06"}  # the mango rows
    assert data["bad_rows"] == []


@pytest.fixture(scope="module")
async def seeing_engine():
    from tests.conftest import CPU_ENGINE_ARGS, engine_settings
    from worker.engine.vllm import VllmClassifier
    from worker.testing.seeing import build_seeing_model

    model = build_seeing_model(REPO / ".cache" / "test-model-seeing")
    settings = engine_settings(model)
    settings.extra_args = {**CPU_ENGINE_ARGS, "limit_mm_per_prompt": {"image": 1}}
    classifier = await VllmClassifier.start(settings)
    yield classifier
    classifier.close()


async def test_eval_rows_with_images_from_files_and_urls(seeing_engine, tmp_path: Path):
    """Image rows calibrated on their own: files relative to the dataset and URLs over real
    HTTP through the guarded fetcher, every label exact on the seeing model; a refused host
    and a corrupt file are listed with their rule, a missing file as a bad row."""
    from tests.media_server import MediaServer
    from worker.testing import media_samples as samples

    red, green, blue, white = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
    (tmp_path / "img").mkdir()
    for name, rgb in (("red", red), ("blue", blue), ("white", white)):
        (tmp_path / "img" / f"{name}.png").write_bytes(samples.image(rgb))
    (tmp_path / "img" / "broken.jpg").write_bytes(samples.corrupt_jpeg())
    server = await MediaServer().start()
    try:
        green_url = server.add("green.jpg", samples.image(green, "JPEG"), "image/jpeg")
        red_url = server.add("red.webp", samples.image(red, "WEBP"), "image/webp")

        def row(id_, label, policy, *media, content=None):
            items = [
                {"type": "image", ("url" if m.startswith("http") else "path"): m} for m in media
            ]
            row = {"id": id_, "label": label, "policy": policy, "media": items}
            return orjson.dumps(row | ({"content": content} if content else {}))

        lines = [
            row("f1", 1, "fruit", "img/red.png"),  # red shows apple
            row("f2", 0, "fruit", "img/blue.png"),
            row("f3", 0, "fruit", "img/white.png"),  # white shows nothing
            row("f4", 1, "fruit", red_url, content="look at this"),
            row("f5", 0, "fruit", green_url),
            row("n1", 1, "nature", "img/blue.png"),  # blue shows river
            row("n2", 1, "nature", green_url),  # green shows meadow
            row("n3", 0, "nature", "img/red.png"),
            row("x1", 1, "fruit", "img/missing.png"),  # line 9: no such file
            row("x2", 1, "fruit", "http://cdn.example.com/a.png"),  # line 10: host refused
            row("x3", 0, "fruit", "img/broken.jpg"),  # line 11: corrupt
        ]
        (tmp_path / "images.jsonl").write_bytes(b"\n".join(lines))
        media = {
            "allowed_schemes": ["http"],
            "allowed_hosts": ["127.0.0.1"],
            "allow_loopback": True,
        }
        settings = Settings(policies={"dir": POLICIES}, media=media)
        request = EvalRequest(
            dataset=tmp_path / "images.jsonl",
            policy=None,
            pairs=None,
            compare=None,
            out=tmp_path / "report",
            targets=Targets(precision=0.95),
        )
        selection, sample = prepare(settings, request)
        evaluation = await evaluate_sample(
            settings, request, seeing_engine, selection, sample, Console(file=io.StringIO())
        )
    finally:
        await server.stop()

    fruit, nature = evaluation.policies
    assert (fruit.confusion.n, nature.confusion.n) == (5, 3)
    for result in (fruit, nature):
        assert result.confusion.accuracy == 1.0, result.items
    shown = {item.id: item.content for item in fruit.items}
    assert shown["f1"] == "[image: red.png]" and shown["f4"] == f"look at this [image: {red_url}]"
    reasons = {b.line: b.reason for b in evaluation.bad_rows}
    assert set(reasons) == {9, 10, 11}, reasons
    assert reasons[9].startswith("media[0]: no such file")
    assert reasons[10].startswith("media_rejected: host_not_allowed")
    assert reasons[11].startswith("media_rejected: corrupt")
    assert server.hits["green.jpg"] == 1  # fetched once for both rows that show it
