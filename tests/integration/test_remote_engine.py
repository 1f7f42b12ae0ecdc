"""engine.kind=remote against a real vLLM OpenAI-compatible server on the CPU engine.

The server runs the same test model as the in-process engine; the worker sends its own
prompt token ids. The labels must be the in-process engine's; a server killed mid-stream
is waited for with nothing lost; servers that cannot serve the worker stop start-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from worker.app import open_worker
from worker.engine import EngineError
from worker.engine.remote import RemoteClassifier
from worker.observability.health import serve_health

from .harness import (
    TEST_POLICIES,
    RunningWorker,
    committed,
    create_topics,
    event,
    labels_and_scores,
    produce,
    read_topic,
    topic_names,
    verdicts,
    worker_settings,
)
from .vllm_server import SERVED_NAME, VllmServer

pytestmark = pytest.mark.integration

API_KEY = "test-key-7f3a"
CPU_ARGS = {"extra_args": {"enforce_eager": True, "block_size": 32}}


@pytest.fixture(scope="session")
def vllm_server(test_model, tmp_path_factory):
    # With the token-in endpoint that media prompts use: a text-only model must still be
    # found to take no media.
    server = VllmServer(
        test_model,
        tmp_path_factory.mktemp("vllm") / "server.log",
        API_KEY,
        extra_args=["--enable-scale-out"],
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def image_template(test_model, tmp_path_factory) -> Path:
    """The text-only test model's tokenizer with a chat template that attaches images (the
    seeing model's), so that the worker sends media prompts and sees how servers answer."""
    from worker.testing.seeing import CHAT_TEMPLATE

    path = tmp_path_factory.mktemp("image-template")
    for name in ("config.json", "tokenizer.json", "special_tokens_map.json"):
        shutil.copy(test_model / name, path / name)
    config = json.loads((test_model / "tokenizer_config.json").read_text())
    (path / "tokenizer_config.json").write_text(
        json.dumps({**config, "chat_template": CHAT_TEMPLATE})
    )
    return path


@pytest.fixture(scope="session")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("secret") / "api-key"
    path.write_text(API_KEY + "\n")
    return path


def remote_engine(vllm_server, key_file, **overrides) -> dict:
    return {
        "kind": "remote",
        "url": vllm_server.url,
        "served_model_name": SERVED_NAME,
        "api_key_file": str(key_file),
        "connect_retry_s": 5,
        "backoff_max_s": 1,
        **overrides,
    }


def _contents() -> list[tuple[str, str]]:
    words = ["mango", "river", "hammer", "apple", "meadow", "wrench", ""]
    return [
        (f"same-{n}", f"note {n} about {words[n % len(words)]} and other things " * (1 + n % 3))
        for n in range(42)
    ]


async def test_labels_and_scores_equal_the_in_process_engines(
    broker, engine, test_model, vllm_server, key_file
):
    bootstrap = broker.bootstrap_servers
    items = _contents()
    expected = {item_id for item_id, _ in items}
    policies = ["fruit", "nature", "tools"]
    records = [(i.encode(), event(i, text, policies=policies), []) for i, text in items]
    outcome = {}
    for kind in ("local", "remote"):
        topics = topic_names(f"same-{kind}")
        if kind == "local":
            settings = worker_settings(bootstrap, test_model, topics, engine=CPU_ARGS)
            classifier = engine
        else:
            # Two URLs of the one server: requests are spread over a list of servers.
            urls = f"{vllm_server.url},http://localhost:{vllm_server.port}"
            engine_options = remote_engine(vllm_server, key_file, url=urls)
            settings = worker_settings(bootstrap, test_model, topics, engine=engine_options)
            classifier = await RemoteClassifier.start(settings.engine)
        await create_topics(bootstrap, list(topics.values()), 3)
        await produce(bootstrap, topics["content"], records)
        try:
            async with RunningWorker(settings, _Borrowed(classifier)):
                results = await read_topic(bootstrap, topics["results"], ids=expected, timeout=180)
        finally:
            if kind == "remote":
                classifier.close()
        outcome[kind] = labels_and_scores(results)
        assert set(outcome[kind]) == expected
    local, remote = outcome["local"], outcome["remote"]
    for item_id in expected:
        for policy in policies:
            assert remote[item_id][policy][0] == local[item_id][policy][0], (item_id, policy)
            assert remote[item_id][policy][1] == pytest.approx(local[item_id][policy][1], abs=1e-3)
    # The test model's rule holds, so equal labels are not equal by accident.
    assert remote["same-0"]["fruit"][0] == 1 and remote["same-1"]["nature"][0] == 1
    assert remote["same-6"] == {p: (0, pytest.approx(remote["same-6"][p][1])) for p in policies}


async def test_prompts_meet_the_servers_prefix_cache(test_model, vllm_server, key_file):
    from worker.policies import parse_policy
    from worker.prompts import assemble, build_policy_prompt, tokenize_contents

    settings = worker_settings(
        "127.0.0.1:1", test_model, topic_names("cache"), engine=remote_engine(vllm_server, key_file)
    )
    remote = await RemoteClassifier.start(settings.engine)
    try:
        text = "Flag content that mentions any of: comet, otter. " + "Context words. " * 20
        policy = parse_policy(f"---\nid: remote-cache\n---\n{text}")
        prompt = build_policy_prompt(remote.tokenizer, policy, remote.max_model_len)
        contents = [f"item {n} says hello {'again ' * n}" for n in range(3)]
        scores = []
        for ids in tokenize_contents(remote.tokenizer, contents):  # one at a time: alone
            scores.append(await remote.score(assemble(prompt, ids, "dead_letter")))
        together = await asyncio.gather(
            *(
                remote.score(assemble(prompt, ids, "dead_letter"))
                for ids in tokenize_contents(remote.tokenizer, contents)
            )
        )
    finally:
        remote.close()
    block = 32
    for later in scores[1:]:
        assert later.cached_tokens >= (len(prompt.prefix) // block) * block > 0
    # Sent in one request, the same prompts get the same answers and no made-up counts.
    assert [s.p_yes for s in together] == pytest.approx([s.p_yes for s in scores], abs=1e-6)
    assert all(s.cached_tokens is None for s in together)


async def test_a_server_of_a_text_only_model_takes_no_media_and_says_why(
    test_model, vllm_server, key_file, image_template
):
    from worker.engine.remote_check import check_prompt

    async def started(**engine) -> RemoteClassifier:
        options = remote_engine(vllm_server, key_file, **engine)
        settings = worker_settings("127.0.0.1:1", test_model, topic_names("text"), engine=options)
        return await RemoteClassifier.start(settings.engine)

    # The model's own template attaches no images: the server is not even asked.
    remote = await started()
    remote.close()
    assert remote.accepts_media is False and "chat template" in remote.no_media
    # A template that does: the server has the token-in endpoint, but its model refuses an
    # image, and says so.
    remote = await started(tokenizer=str(image_template))
    try:
        assert remote.accepts_media is False
        assert vllm_server.url in remote.no_media and "image" in remote.no_media
        assert "--enable-scale-out" not in remote.no_media, remote.no_media
        # Text is still classified.
        assert (await remote.score(check_prompt(remote.tokenizer, 4096))).p_yes < 0.5
    finally:
        remote.close()


class _Borrowed:
    """A classifier the test closes itself, so the session engine outlives the worker."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.tokenizer = inner.tokenizer
        self.model_name = inner.model_name
        self.max_model_len = inner.max_model_len

    async def score(self, prompt_token_ids):
        return await self.inner.score(prompt_token_ids)

    @property
    def unready(self):
        return getattr(self.inner, "unready", None)

    def close(self) -> None:
        pass


async def test_server_killed_mid_stream_is_waited_for_and_nothing_is_lost(
    broker, test_model, vllm_server, key_file
):
    total = 1200
    expected = {f"k-{n}" for n in range(total)}
    bootstrap = broker.bootstrap_servers
    topics = topic_names("remotekill")
    settings = worker_settings(
        bootstrap,
        test_model,
        topics,
        engine=remote_engine(vllm_server, key_file, max_retries=1),
        health={"enabled": True, "host": "127.0.0.1", "port": 0},
    )
    await create_topics(bootstrap, list(topics.values()), 3)
    records = [
        (f"k-{n}".encode(), event(f"k-{n}", f"entry {n}" + (" mango" if n % 4 == 0 else "")), [])
        for n in range(total)
    ]
    await produce(bootstrap, topics["content"], records)
    classifier = await RemoteClassifier.start(settings.engine)
    try:
        async with serve_health(settings.health) as health:
            async with open_worker(settings, classifier, health) as worker:
                running = asyncio.create_task(worker.run())
                ready = f"http://127.0.0.1:{health.port}/readyz"
                await _until(lambda: _get(ready)[0] == 200, 60, "worker never became ready")
                await read_topic(bootstrap, topics["results"], at_least=50, timeout=120, settle=0)
                vllm_server.kill()
                await _until(lambda: _get(ready)[0] == 503, 30, "never reported not-ready")
                _, body = _get(ready)
                assert "unreachable" in body["checks"]["engine"], body
                await asyncio.sleep(2)  # batches scored before the kill finish publishing
                down_at = await _count(bootstrap, topics["results"])
                assert down_at < total, "the stream ended before the server was killed"
                # While the server is down the worker waits: nothing is dead-lettered and
                # nothing more is published.
                await asyncio.sleep(6)
                assert not running.done()
                assert await _count(bootstrap, topics["dead_letter"]) == 0
                assert await _count(bootstrap, topics["results"]) == down_at
                await asyncio.to_thread(vllm_server.start)  # the same port, as a restart does
                results = await read_topic(bootstrap, topics["results"], ids=expected, timeout=300)
                await _until(lambda: _get(ready)[0] == 200, 30, "not ready after the restart")
                worker.stop()
                assert await asyncio.wait_for(running, 60) == 0
    finally:
        classifier.close()
    labels = {v["id"]: v["label"] for v in verdicts(results)}
    assert set(labels) == expected
    assert all(labels[f"k-{n}"] == (n % 4 == 0) for n in range(total))
    assert await _count(bootstrap, topics["dead_letter"]) == 0
    positions = await committed(bootstrap, settings.kafka.group_id, topics["content"])
    assert sum(p or 0 for p in positions.values()) == total


async def _count(bootstrap: str, topic: str) -> int:
    return len(await read_topic(bootstrap, topic, timeout=5, settle=0.5))


def _get(url: str) -> tuple[int, dict]:
    response = httpx.get(url, timeout=5)
    return response.status_code, response.json()


async def _until(condition, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(message)


def _run_cli(env: dict[str, str], bootstrap: str) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    base = {
        "WORKER_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "WORKER_KAFKA__ENABLE_IDEMPOTENCE": "false",
        "WORKER_POLICIES__DIR": str(TEST_POLICIES),
        "WORKER_HEALTH__ENABLED": "false",
        "WORKER_ENGINE__KIND": "remote",
        "WORKER_ENGINE__CONNECT_RETRY_S": "1",
        "WORKER_TOPICS__CREATE": "true",  # brokers and topics are checked before the engine
    }
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "run"],
        capture_output=True,
        env={**clean, **base, **env},
        timeout=120,
        check=False,
    )


def _one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    [line] = [line for line in stderr.splitlines() if line.startswith("error:")]
    return line


def test_wrong_url_stops_start_up_with_a_clear_message(broker, test_model):
    from worker.tools.broker import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = _run_cli(
        {"WORKER_ENGINE__MODEL": str(test_model), "WORKER_ENGINE__URL": url},
        broker.bootstrap_servers,
    )
    line = _one_error_line(result)
    assert url in line and "unreachable" in line and "engine.url" in line


def test_server_of_another_model_stops_start_up(broker, test_model, vllm_server, key_file):
    result = _run_cli(
        {
            "WORKER_ENGINE__MODEL": str(test_model),
            "WORKER_ENGINE__SERVED_MODEL_NAME": "zentropi-ai/cope-b-a4b",
            "WORKER_ENGINE__URL": vllm_server.url,
            "WORKER_ENGINE__API_KEY_FILE": str(key_file),
        },
        broker.bootstrap_servers,
    )
    line = _one_error_line(result)
    assert f"serves {SERVED_NAME}" in line and "engine.served_model_name" in line


async def test_wrong_api_key_stops_start_up_and_names_the_setting(test_model, vllm_server):
    settings = worker_settings(
        "127.0.0.1:1",
        test_model,
        topic_names("key"),
        engine={
            "kind": "remote",
            "url": vllm_server.url,
            "served_model_name": SERVED_NAME,
            "api_key": "wrong",
        },
    )
    with pytest.raises(EngineError, match="refused the API key.*engine.api_key_file") as info:
        await RemoteClassifier.start(settings.engine)
    assert "wrong" not in str(info.value)


def test_policy_longer_than_the_servers_context_stops_start_up(
    broker, test_model, vllm_server, key_file, tmp_path
):
    policies = tmp_path / "policies"
    policies.mkdir()
    words = " ".join(f"clause {n} of a long policy." for n in range(1500))
    (policies / "long.md").write_text(f"---\nid: long\n---\nFlag any of: comet. {words}\n")
    result = _run_cli(
        {
            "WORKER_ENGINE__MODEL": str(test_model),
            "WORKER_ENGINE__SERVED_MODEL_NAME": SERVED_NAME,
            "WORKER_ENGINE__URL": vllm_server.url,
            "WORKER_ENGINE__API_KEY_FILE": str(key_file),
            "WORKER_POLICIES__DIR": str(policies),
        },
        broker.bootstrap_servers,
    )
    line = _one_error_line(result)
    assert "policy 'long' takes" in line and "max_model_len is 4096" in line, line
    assert "--max-model-len" in line
    assert API_KEY not in result.stdout.decode() + result.stderr.decode()


def _served(server: VllmServer) -> float:
    """Prompts the server has answered, from its own metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "vllm:request_success"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


async def test_a_fleet_server_that_restarts_gets_its_share_of_traffic_again(
    test_model, vllm_server, key_file, image_template, tmp_path
):
    from worker.policies import parse_policy
    from worker.prompts import assemble, build_policy_prompt, tokenize_contents

    # A fresh server: the worker's start-up check is the first request it ever sees.
    fresh = VllmServer(test_model, tmp_path / "fresh.log", API_KEY).start()
    try:
        urls = f"{vllm_server.url},{fresh.url}"
        settings = worker_settings(
            "127.0.0.1:1",
            test_model,
            topic_names("fleet"),
            engine=remote_engine(
                vllm_server,
                key_file,
                url=urls,
                prompts_per_request=1,
                tokenizer=str(image_template),  # so that the servers are asked about media
            ),
        )
        remote = await RemoteClassifier.start(settings.engine)
        try:
            # A server without the token-in endpoint is named with the flag it lacks.
            assert remote.accepts_media is False
            assert f"{fresh.url} does not serve" in remote.no_media, remote.no_media
            assert "--enable-scale-out" in remote.no_media
            health = await asyncio.to_thread(httpx.get, f"{fresh.url}/health")
            assert fresh.alive() and health.status_code == 200
            policy = parse_policy("---\nid: fleet\n---\nFlag content that mentions: comet.")
            prompt = build_policy_prompt(remote.tokenizer, policy, remote.max_model_len)
            [ids] = tokenize_contents(remote.tokenizer, ["a note about a comet"])

            async def split(count: int) -> tuple[float, float]:
                before = (_served(vllm_server), _served(fresh) if fresh.alive() else 0)
                for _ in range(count):  # one at a time: each request picks a server
                    assert (await remote.score(assemble(prompt, ids, "dead_letter"))).p_yes > 0.5
                await asyncio.sleep(0.5)  # the servers count a request just after answering it
                after = (_served(vllm_server), _served(fresh) if fresh.alive() else 0)
                return after[0] - before[0], after[1] - before[1]

            assert await split(20) == (10, 10)
            fresh.kill()
            assert await split(20) == (20, 0)  # waited for on the other server, not failed
            assert remote.unready is None
            await asyncio.to_thread(fresh.start)  # the same port, as a restart does
            restarted = time.monotonic()
            # Probes (backoff_max_s=1) find it within seconds; traffic is split again.
            while (await split(2))[1] == 0:
                assert time.monotonic() - restarted < 10, "restarted server never got traffic"
            assert await split(20) == (10, 10)
            assert fresh.alive()
        finally:
            remote.close()
    finally:
        fresh.stop()
