"""Images and video end to end: real broker, real CPU engine with the seeing test model,
media served over real HTTP from 127.0.0.1 and inline; exact labels and every bad case
dead-lettered with its reason. The remote engine, against a vLLM server of the same model,
builds the same prompts and gets the in-process engine's scores."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import SEEING_IMAGES
from tests.media_server import MediaServer
from worker.prompts import build_policy_prompt
from worker.testing import media_samples as samples
from worker.testing.words import FILLER_WORDS

from .harness import (
    RunningWorker,
    create_topics,
    labels_and_scores,
    produce,
    read_topic,
    topic_names,
    verdicts,
)
from .harness import worker_settings as base_settings
from .vllm_server import SERVED_NAME, VllmServer

pytestmark = pytest.mark.integration

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)  # apple, river, nothing
POLICIES = {
    "fruit": "Flag content that mentions any of: apple, mango.",
    "water": "Flag content that mentions any of: river, walnut.",
}
MEDIA = {
    "allowed_schemes": ["http"],
    "allowed_hosts": ["127.0.0.1", "169.254.169.254"],
    "allow_loopback": True,
    "max_bytes": 200_000,
    "max_frames": SEEING_IMAGES,  # as many as the seeing engine takes in one prompt
    "read_timeout_s": 1.0,
    "fetch_timeout_s": 5.0,
    "fetch_retries": 2,
}


API_KEY = "media-key-5e0b"


@pytest.fixture(scope="module")
def seeing_server(seeing_model, tmp_path_factory):
    """vLLM's server on the seeing model, with its token-in endpoint (which media prompts
    need) and room for a video's frames in one prompt, as the in-process engine has."""
    limit = json.dumps({"image": SEEING_IMAGES})
    server = VllmServer(
        seeing_model,
        tmp_path_factory.mktemp("vllm-seeing") / "server.log",
        API_KEY,
        extra_args=["--enable-scale-out", "--limit-mm-per-prompt", limit],
    )
    server.start()
    yield server
    server.stop()


def remote_engine(vllm_server: VllmServer) -> dict:
    return {
        "kind": "remote",
        "url": vllm_server.url,
        "served_model_name": SERVED_NAME,
        "api_key": API_KEY,
        "connect_retry_s": 5,
        "backoff_max_s": 1,
    }


@pytest.fixture
async def server():
    server = await MediaServer().start()
    yield server
    await server.stop()


def settings_for(broker, model: Path, tmp_path: Path, topics: dict, **sections):
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    for name, text in POLICIES.items():
        (policies / f"{name}.md").write_text(f"---\nid: {name}\n---\n{text}\n")
    return base_settings(
        broker.bootstrap_servers,
        model,
        topics,
        policies={"dir": str(policies), "watch": False},
        media=MEDIA,
        **sections,
    )


def ev(item_id: str, media: list[dict], content: str | None = None) -> tuple:
    body = {"id": item_id, "media": media, **({"content": content} if content else {})}
    return (item_id.encode(), orjson.dumps(body), [])


def inline(kind: str, data: bytes) -> dict:
    return {"type": kind, "data": base64.b64encode(data).decode()}


def labels(verdict: dict) -> dict[str, int]:
    return {v["policy"]: v["label"] for v in verdict["verdicts"]}


async def test_media_labels_exact_and_bad_media_dead_lettered(
    broker, seeing_model, seeing_engine, server, tmp_path
):
    url = server.add
    server.files["page.png"] = (b"<html>hello</html>", "image/png")
    server.failures["flaky.png"] = 2  # two 500s, then the image: retried to success
    server.failures["down.png"] = 10  # never recovers within the retries
    red_png = samples.image(RED)
    good = {
        "red-url": ([{"type": "image", "url": url("red.png", red_png)}], None),
        "red-again": ([{"type": "image", "url": url("red-copy.png", red_png)}], None),
        "blue-inline": ([inline("image", samples.image(BLUE, "JPEG"))], None),
        "white-webp": (
            [{"type": "image", "url": url("w.webp", samples.image(WHITE, "WEBP"))}],
            None,
        ),
        "video-mp4": ([{"type": "video", "url": url("v.mp4", samples.video([WHITE, RED]))}], None),
        "video-webm": ([inline("video", samples.video([BLUE], "webm"))], None),
        "text-and-image": ([inline("image", samples.image(BLUE))], "a mango on the table"),
        "several": (
            [
                inline("image", samples.image(WHITE)),
                {"type": "image", "url": url("r.gif", samples.image(RED, "GIF"))},
            ],
            None,
        ),
        "flaky": ([{"type": "image", "url": f"{server.base}/f/flaky.png"}], None),
    }
    server.add("flaky.png", samples.image(BLUE))
    expected = {
        "red-url": {"fruit": 1, "water": 0},
        "red-again": {"fruit": 1, "water": 0},
        "blue-inline": {"fruit": 0, "water": 1},
        "white-webp": {"fruit": 0, "water": 0},
        "video-mp4": {"fruit": 1, "water": 0},
        "video-webm": {"fruit": 0, "water": 1},
        "text-and-image": {"fruit": 1, "water": 1},
        "several": {"fruit": 1, "water": 0},
        "flaky": {"fruit": 0, "water": 1},
        "text-only": {"fruit": 0, "water": 1},
    }
    bad = {
        "oversized": ([{"type": "image", "url": url("big.png", samples.noise((300, 300)))}], "media_rejected", "too_large"),
        "bomb": ([inline("image", samples.png_bomb())], "media_rejected", "too_many_pixels"),
        "corrupt": ([{"type": "image", "url": url("c.jpg", samples.corrupt_jpeg())}], "media_rejected", "corrupt"),
        "wrong-type": ([{"type": "image", "url": f"{server.base}/f/page.png"}], "media_rejected", "not_an_image"),
        "video-is-image": ([inline("video", red_png)], "media_rejected", "not_a_video"),
        "host": ([{"type": "image", "url": "http://media.example.org/a.png"}], "media_rejected", "host_not_allowed"),
        "redirect": (
            [{"type": "image", "url": f"{server.base}/to?url=http://169.254.169.254/latest/meta-data"}],
            "media_rejected",
            "address_not_allowed",
        ),
        "missing": ([{"type": "image", "url": f"{server.base}/f/nothing.png"}], "media_rejected", "http_404"),
        "down": ([{"type": "image", "url": f"{server.base}/f/down.png"}], "media_unavailable", "http_500"),
    }  # fmt: skip
    records = [ev(i, media, content) for i, (media, content) in good.items()]
    records.append((b"text-only", orjson.dumps({"id": "text-only", "content": "a walnut"}), []))
    records += [ev(i, media) for i, (media, _, _) in bad.items()]

    topics = topic_names("media")
    settings = settings_for(broker, seeing_model, tmp_path, topics)
    await create_topics(broker.bootstrap_servers, list(topics.values()), 3)
    async with RunningWorker(settings, seeing_engine) as running:
        await produce(broker.bootstrap_servers, topics["content"], records[:1])
        await read_topic(broker.bootstrap_servers, topics["results"], ids=["red-url"], settle=0)
        await produce(broker.bootstrap_servers, topics["content"], records[1:])
        results = await read_topic(broker.bootstrap_servers, topics["results"], ids=expected)
        letters = await read_topic(
            broker.bootstrap_servers, topics["dead_letter"], at_least=len(bad)
        )
        # Every item is done: the media bytes held against the in-flight bound are released.
        assert running.worker._intake.media.held == 0

    by_id = {v["id"]: v for v in verdicts(results)}
    assert {i: labels(by_id[i]) for i in expected} == expected
    assert "media" not in by_id["text-only"]
    seen = by_id["several"]["media"]
    assert [m["where"] for m in seen] == ["media[0]", f"{server.base}/f/r.gif"]
    assert seen[1]["sha256"] == __import__("hashlib").sha256(samples.image(RED, "GIF")).hexdigest()
    assert by_id["video-mp4"]["media"][0]["frames"] == 4
    # The same picture under another URL: the verdict cache answers, no engine request.
    assert all(v["cached"] for v in by_id["red-again"]["verdicts"])
    assert by_id["red-again"]["media"][0]["sha256"] == by_id["red-url"]["media"][0]["sha256"]
    assert server.hits["flaky.png"] == 3

    got = {}
    for record in letters:
        headers = dict(record.headers)
        got[record.key.decode()] = (
            headers["x-dead-letter-error-type"].decode(),
            headers["x-dead-letter-reason"].decode(),
        )
    assert set(got) == set(bad)
    for item_id, (_, kind, rule) in bad.items():
        assert got[item_id][0] == kind, item_id
        assert rule in got[item_id][1], (item_id, got[item_id][1])


async def test_a_slow_media_server_holds_up_nothing_else(
    broker, seeing_model, seeing_engine, server, tmp_path
):
    """One partition: the slow item comes first, the text and inline items after it still
    get their verdicts while its fetch waits out its timeouts."""
    server.slow_s = 30
    server.add("slow.png", samples.image(RED))
    topics = topic_names("media-slow")
    settings = settings_for(broker, seeing_model, tmp_path, topics, partitions=1)
    await create_topics(broker.bootstrap_servers, list(topics.values()), 1)
    after = {f"after-{n}": f"a walnut {n}" for n in range(5)}
    records = [ev("slow", [{"type": "image", "url": f"{server.base}/slow/slow.png"}])]
    records += [(k.encode(), orjson.dumps({"id": k, "content": c}), []) for k, c in after.items()]
    records.append(ev("inline-after", [inline("image", samples.image(RED))]))
    async with RunningWorker(settings, seeing_engine):
        started = time.monotonic()
        await produce(broker.bootstrap_servers, topics["content"], records)
        ids = [*after, "inline-after"]
        results = await read_topic(broker.bootstrap_servers, topics["results"], ids=ids, settle=0)
        others_done = time.monotonic() - started
        letters = await read_topic(
            broker.bootstrap_servers, topics["dead_letter"], at_least=1, settle=0
        )
        slow_done = time.monotonic() - started
    assert {v["id"] for v in verdicts(results)} == set(ids)
    assert [r.key for r in letters] == [b"slow"]
    assert dict(letters[0].headers)["x-dead-letter-error-type"] == b"media_unavailable"
    # The slow fetch takes three read timeouts and two backoffs; the rest did not wait for it.
    assert others_done < slow_done - 1.5, (others_done, slow_done)


async def test_the_remote_engine_scores_media_as_the_in_process_engine_does(
    broker, seeing_model, seeing_engine, seeing_server, server, tmp_path
):
    from worker.engine.remote import RemoteClassifier

    url = server.add
    items = {
        "red-url": ([{"type": "image", "url": url("red.png", samples.image(RED))}], None),
        "blue-jpeg": ([inline("image", samples.image(BLUE, "JPEG"))], None),
        "white-webp": ([inline("image", samples.image(WHITE, "WEBP"))], None),
        "video-mp4": ([{"type": "video", "url": url("v.mp4", samples.video([WHITE, RED]))}], None),
        "text-and-image": ([inline("image", samples.image(BLUE))], "a mango on the table"),
        "several": (
            [inline("image", samples.image(WHITE)), inline("image", samples.image(RED, "GIF"))],
            None,
        ),
    }
    expected = {
        "red-url": {"fruit": 1, "water": 0},
        "blue-jpeg": {"fruit": 0, "water": 1},
        "white-webp": {"fruit": 0, "water": 0},
        "video-mp4": {"fruit": 1, "water": 0},
        "text-and-image": {"fruit": 1, "water": 1},
        "several": {"fruit": 1, "water": 0},
        "text-only": {"fruit": 0, "water": 1},
    }
    records = [ev(i, media, content) for i, (media, content) in items.items()]
    records.append((b"text-only", orjson.dumps({"id": "text-only", "content": "a walnut"}), []))
    outcome = {}
    for kind in ("local", "remote"):
        topics = topic_names(f"media-{kind}")
        if kind == "local":
            settings = settings_for(broker, seeing_model, tmp_path, topics)
            classifier = seeing_engine
        else:
            engine = remote_engine(seeing_server)
            settings = settings_for(broker, seeing_model, tmp_path, topics, engine=engine)
            classifier = await RemoteClassifier.start(settings.engine)
            assert classifier.accepts_media, classifier.no_media
            # Counted from the model files, as the in-process engine counts it.
            assert classifier.tokens_per_image == seeing_engine.tokens_per_image == 4
        await create_topics(broker.bootstrap_servers, list(topics.values()), 3)
        await produce(broker.bootstrap_servers, topics["content"], records)
        try:
            async with RunningWorker(settings, classifier):
                results = await read_topic(
                    broker.bootstrap_servers, topics["results"], ids=expected
                )
        finally:
            if kind == "remote":
                classifier.close()
        outcome[kind] = labels_and_scores(results)
    local, remote = outcome["local"], outcome["remote"]
    assert {i: {p: v[0] for p, v in remote[i].items()} for i in expected} == expected
    for item_id in expected:
        for policy in POLICIES:
            assert remote[item_id][policy][0] == local[item_id][policy][0], (item_id, policy)
            assert remote[item_id][policy][1] == pytest.approx(
                local[item_id][policy][1], rel=1e-3, abs=1e-5
            ), (item_id, policy)


def test_the_server_builds_the_workers_prompt_with_the_image_where_the_template_puts_it(
    seeing_model, seeing_server
):
    """The server's prompt is the worker's ids, with only the image placeholder expanded by
    the model's processor, in the place the chat template writes it."""
    from PIL import Image
    from transformers import AutoTokenizer

    from worker.engine.image_tokens import model_tokens_per_image
    from worker.engine.media_api import GENERATE_PATH, generate_body, image_parts
    from worker.engine.remote_check import check_prompt
    from worker.prompts import answer_token_ids
    from worker.testing.seeing import IMAGE_TOKEN

    tokenizer = AutoTokenizer.from_pretrained(str(seeing_model))
    ids = check_prompt(tokenizer, 4096, "[image]", images=1)
    no, yes = answer_token_ids(tokenizer)
    parts = image_parts([Image.new("RGB", (32, 32), RED)])
    body = {**generate_body(SERVED_NAME, ids, parts, no, yes), "return_token_ids": True}
    response = httpx.post(
        f"{seeing_server.url}{GENERATE_PATH}",
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    reply = response.json()
    served = reply["prompt_token_ids"]
    [place] = reply["mm_placeholders"]["image"]
    at = ids.index(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    assert place["offset"] == at
    expansion = served[at : at + place["length"]]
    assert served == ids[:at] + expansion + ids[at + 1 :]
    assert tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) in expansion
    # What the worker budgets per image is what the server's processor makes of one.
    assert place["length"] == model_tokens_per_image(str(seeing_model))


def content_of_length(tokenizer, low: int, high: int) -> str:
    """An "apple" and filler whose ids with the lead-in are between low and high long."""
    from worker.prompts import tokenize_contents

    words = ["an", "apple", *(FILLER_WORDS[n % 50] for n in range(high))]
    lengths = tokenize_contents(tokenizer, [" ".join(words[:n]) for n in range(2, len(words))])
    n = max(n for n, ids in enumerate(lengths, 2) if len(ids) <= high)
    assert low <= len(lengths[n - 2]) <= high, (low, high, len(lengths[n - 2]))
    return " ".join(words[:n])


async def test_text_that_fits_alone_but_not_beside_its_image_follows_engine_overlong(
    broker, seeing_model, seeing_engine, tmp_path
):
    """The image's tokens in the engine count in the budget: with overlong=truncate the
    text is cut to fit beside the image (exact labels: the apple at its start and the
    image's river both seen), with dead_letter it ends as content_too_long, never as an
    engine_error after the engine refused it."""
    from worker.policies import load_policies
    from worker.prompts import content_room, media_suffix

    settings = settings_for(broker, seeing_model, tmp_path, topic_names("fit-probe"))
    [policy] = load_policies(settings.policies.dir).resolve(["fruit"])
    tokenizer = seeing_engine.tokenizer
    prompt = build_policy_prompt(tokenizer, policy, settings.engine.max_model_len)
    text_room = content_room(prompt, media_suffix(tokenizer, 1))
    image = seeing_engine.tokens_per_image
    assert image == 4
    # Fits with the placeholder alone; beside the image's tokens it is past max_model_len.
    text = content_of_length(tokenizer, text_room - image + 3, text_room)
    event = ev("long", [inline("image", samples.image(BLUE))], text)
    outcome = {}
    for overlong in ("truncate", "dead_letter"):
        topics = topic_names(f"fit-{overlong}")
        settings = settings_for(
            broker, seeing_model, tmp_path, topics, engine={"overlong": overlong}
        )
        await create_topics(broker.bootstrap_servers, list(topics.values()), 1)
        await produce(broker.bootstrap_servers, topics["content"], [event])
        async with RunningWorker(settings, seeing_engine):
            if overlong == "truncate":
                outcome[overlong] = await read_topic(
                    broker.bootstrap_servers, topics["results"], ids=["long"]
                )
            else:
                outcome[overlong] = await read_topic(
                    broker.bootstrap_servers, topics["dead_letter"], at_least=1
                )
    [verdict] = verdicts(outcome["truncate"])
    assert labels(verdict) == {"fruit": 1, "water": 1}
    [letter] = outcome["dead_letter"]
    headers = dict(letter.headers)
    assert headers["x-dead-letter-error-type"] == b"content_too_long"
    reason = headers["x-dead-letter-reason"].decode()
    assert "'fruit'" in reason or "'water'" in reason
    assert "1 image of 4 tokens each" in reason and "engine.overlong" in reason
