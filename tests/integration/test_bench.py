"""A small run of ``moderation-worker bench`` on the session broker and engine.

It checks that the benchmark measures what it says, with every item accounted for, not
how fast anything is: speed targets belong to the benchmark itself.
"""

from __future__ import annotations

import orjson
import pytest

from worker.tools.bench.config import CPU_ENGINE_ARGS, BenchConfig
from worker.tools.bench.launch import build_system
from worker.tools.bench.report import write_json
from worker.tools.bench.runner import RAW_LOOP_SCALE, run_bench

from ..conftest import REPO

pytestmark = pytest.mark.integration


def _config(model, tmp_path, **fields) -> BenchConfig:
    """A small run on the repository's policies and the CPU engine, its files in tmp_path."""
    base = dict(
        model=str(model),
        policy_dir=REPO / "policies",
        engine_args=CPU_ENGINE_ARGS,
        wait_timeout_s=120.0,
        workdir=tmp_path,
    )
    return BenchConfig(**(base | fields))


async def _run(config: BenchConfig, broker, tokenizer, engine=None) -> dict:
    """The configured phases, each system built in this process: on the session's
    ``engine`` when given, else with an engine of its own."""

    async def in_process(kind, spec):
        return await build_system(kind, config, spec, classifier=engine)

    return await run_bench(
        config, tokenizer, bootstrap=broker.bootstrap_servers, launcher=in_process
    )


async def test_bench_worker_and_overhead_phases(broker, engine, test_model, tmp_path):
    config = _config(
        test_model,
        tmp_path,
        max_model_len=engine.max_model_len,
        policy_tokens=300,
        content_tokens=(20, 60),
        events=40,
        warmup_events=10,
        levels=(),
        level_rates=(20.0,),  # this few events say little about the maximum: a fixed rate
        level_seconds=3.0,
        level_warmup_seconds=1.0,
        overhead_events=1000,
        batch={"max_items": 4},
        phases=("worker", "overhead"),
    )
    result = await _run(config, broker, engine.tokenizer, engine)
    write_json(result, tmp_path / "bench.json")
    result = orjson.loads((tmp_path / "bench.json").read_bytes())

    phases = result["phases"]
    assert set(phases) == {"worker", "worker-instant", "raw-loop", "tokenizer"}
    raw = 1000 * RAW_LOOP_SCALE  # the raw loop gets a larger backlog to fill a steady window
    for kind, count in (("worker", 40), ("worker-instant", 1000), ("raw-loop", raw)):
        sat = phases[kind]["saturation"]
        assert sat["items"] == count
        assert sat["verdicts"] + sat["dead_letters"] == count, kind
        assert sat["missing"] == 0 and sat["dead_letters"] == 0, kind
        assert sat["items_per_s"] > 0, kind

    [level] = phases["worker"]["levels"]
    assert level["offered_fraction"] is None and level["offered_per_s"] == 20.0
    assert level["sent"] == level["verdicts"] > 0 and level["missing"] == 0
    assert 0 < level["measured"] < level["sent"]  # the lead-in second is not measured
    latency = level["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]

    # Every fitted policy was served, and its prefix came from the cache once warm.
    cache = phases["worker"]["cache"]
    policies = result["workload"]["policies"]
    assert set(cache) == {pid for pid, p in policies.items() if not p["shadow_of"]}
    for row in cache.values():
        assert row["prompts"] > 0
        assert 0 < row["cached_share_of_policy"] <= 1
        assert row["computed_tokens_mean"] + row["cached_tokens_mean"] == pytest.approx(
            row["prompt_tokens_mean"], abs=0.2
        )
    for policy in policies.values():
        assert policy["policy_tokens"] <= 300

    assert result["ratios"]["instant_worker_over_raw_loop"] > 0
    assert result["ratios"]["worker_over_engine"] is None  # the engine phase did not run
    assert result["targets"]["worker_over_engine"]["met"] is None
    assert phases["tokenizer"]["cpu_us_per_item"] > 0


async def test_bench_cache_and_shadow_phases(broker, engine, test_model, tmp_path):
    config = _config(
        test_model,
        tmp_path,
        max_model_len=engine.max_model_len,
        policy_tokens=300,
        content_tokens=(20, 60),
        events=60,
        warmup_events=10,
        overhead_events=200,
        batch={"max_items": 4},
        phases=("cache", "shadow"),
        duplicate_share=0.3,
    )
    result = await _run(config, broker, engine.tokenizer, engine)
    phases = result["phases"]
    assert set(phases) == {"cache", "shadow"}, phases
    cache, shadow = phases["cache"], phases["shadow"]
    assert "error" not in cache and "error" not in shadow, phases
    runs = [cache["unique"], cache["duplicates"], cache["duplicates_without_cache"]]
    for run in [*runs, shadow["with"]]:
        sat = run["saturation"]
        assert sat["verdicts"] == sat["items"] == 60 and sat["missing"] == 0
    assert cache["duplicates_over_unique"] > 0 and cache["hit_cost"]["cpu_us_per_hit"] > 0
    assert result["targets"]["cache_duplicates_over_unique"]["measured"] is not None
    # The draft was scored only in the shadowed run; the shadow phase reused the unique run.
    [draft] = [pid for pid, p in result["workload"]["policies"].items() if p["shadow_of"]]
    assert draft in shadow["with"]["cache"] and draft not in cache["unique"].get("cache", {})
    assert shadow["without"] == cache["unique"]


async def test_bench_remote_and_diy_phases_share_one_vllm_server(
    broker, test_model, tokenizer, tmp_path
):
    """The remote phase measures the worker through an OpenAI server; the DIY peer runs at
    each in-flight bound against that same server, its verdicts checked label by label."""
    config = _config(
        test_model,
        tmp_path,
        max_model_len=4096,
        policy_tokens=300,
        content_tokens=(20, 60),
        events=40,
        warmup_events=10,
        levels=(),
        level_rates=(20.0,),
        level_seconds=3.0,
        level_warmup_seconds=1.0,
        phases=("remote", "diy"),
        diy_in_flight=(4, 16),
        wait_timeout_s=300.0,
    )
    result = await _run(config, broker, tokenizer)
    remote = result["phases"]["worker-remote"]
    assert "error" not in remote, remote
    sat = remote["saturation"]
    assert sat["items"] == sat["verdicts"] == 40 and sat["missing"] == 0
    assert sat["items_per_s"] > 0
    [level] = remote["levels"]
    assert level["sent"] == level["verdicts"] > 0 and level["missing"] == 0
    # Prompts sent alone carry the server's cached-token count; shared requests do not.
    for row in remote.get("cache", {}).values():
        assert 0 < row["cached_share_of_policy"] <= 1
    assert result["ratios"]["remote_over_worker"] is None  # the worker phase did not run

    diy = result["phases"]["diy"]
    assert "error" not in diy, diy
    assert set(diy["runs"]) == {"4", "16"} and diy["best_in_flight"] in (4, 16)
    for run in [remote, *diy["runs"].values()]:
        sat = run["saturation"]
        assert sat["items"] == sat["verdicts"] == 40 and sat["missing"] == 0
        # Every verdict checked against the test model's known label; both labels occur.
        assert run["labels"]["checked"] == 40 and run["labels"]["wrong"] == 0, run["labels"]
        assert 0 < run["labels"]["expected_1"] < 40
        assert run["server_api_cpu_ms_per_item"] > 0 and run["server_engine_cpu_ms_per_item"] > 0
    assert result["ratios"]["remote_over_diy"] > 0
    logs = {path.name for path in (tmp_path / "logs").iterdir()}
    assert "shared-server.log" in logs and "remote-server.log" not in logs


async def test_bench_policies_phase_sweeps_distinct_policies(broker, engine, test_model, tmp_path):
    """Zipf traffic over 1 and then 6 generated policies, each run checked label by label."""
    from worker.tools.bench.chart import policies_svg

    config = _config(
        test_model,
        tmp_path,
        max_model_len=engine.max_model_len,
        content_tokens=(20, 60),
        events=40,
        warmup_events=10,
        batch={"max_items": 8},
        phases=("policies",),
        policy_counts=(1, 6),
        many_policy_words=(20, 400),
    )
    result = await _run(config, broker, engine.tokenizer, engine)
    phase = result["phases"]["policies"]
    assert "error" not in phase, phase
    assert set(phase["runs"]) == {"1", "6"} and phase["over_fewest"]["1"] == 1.0
    assert len(list((tmp_path / "policies-6").glob("*.md"))) == 6
    for run in phase["runs"].values():
        sat = run["saturation"]
        assert sat["items"] == sat["verdicts"] == 40 and sat["missing"] == 0
        assert run["labels"]["checked"] == 40 and run["labels"]["wrong"] == 0, run["labels"]
        prefill = run["prefill"]
        assert 0 < prefill["hit_ratio"] < 1 and prefill["computed_tokens_per_prompt"] > 0
    # One policy stays cached: past the warm-up its items compute their content (and the
    # prefix's last partial block), never the prefix. (Six policies of other lengths are
    # not compared with it: over 40 events length, not caching, would decide.)
    single = phase["runs"]["1"]
    assert single["prefill"]["computed_tokens_per_prompt"] < single["policy_tokens_mean"]
    svg = policies_svg(phase["runs"])
    assert svg.startswith("<svg") and svg.count("<polyline") == 3


async def test_bench_reload_phase_edits_a_policy_under_load(broker, engine, test_model, tmp_path):
    """A pack is compiled and measured; an edit mid-run reaches the verdicts; every item
    ends as a verdict while the pack reloads."""
    config = _config(
        test_model,
        tmp_path,
        max_model_len=engine.max_model_len,
        content_tokens=(10, 30),
        events=40,
        warmup_events=10,
        phases=("reload",),
        policy_counts=(200,),
        many_policy_words=(20, 200),
    )
    result = await _run(config, broker, engine.tokenizer, engine)
    reload = result["phases"]["reload"]
    assert "error" not in reload, reload
    assert reload["policies"] == 200 and reload["catalog_mib"] > 0 and reload["compile_s"] > 0
    # Ten edited files, one added, one removed: only those are compiled again.
    assert (reload["reload_changed"], reload["reload_removed"]) == (11, 1)
    assert reload["missing"] == 0 and reload["verdicts"] == reload["sent"] > 100
    # Both edits (one file, then every file) reach the verdicts while load runs.
    assert reload["reload_visible_after_s"] > 0 and reload["full_reload_visible_after_s"] > 0
    assert reload["longest_gap_one_file_s"] > 0 and reload["longest_gap_all_files_s"] > 0
    # The edits are undone once the run ends.
    pack = tmp_path / "reload-200"
    assert not any("Edited" in p.read_text() for p in pack.glob("*.md"))
    assert len(list(pack.glob("*.md"))) == 200


async def test_cold_policy_micro_batch_counts_prefix_computations(engine, test_model, tmp_path):
    """A micro-batch on a policy the engine has never seen, through the scoring core: vLLM's
    own counts say how many of its items computed the policy's prefix."""
    from worker.tools.bench.cold import cold_trials

    config = BenchConfig(
        model=str(test_model), max_model_len=engine.max_model_len, content_tokens=(10, 30)
    )
    [trial] = await cold_trials(engine, engine.tokenizer, config, 32, trials=1, batch=8, words=600)
    assert trial["items"] == 8 and trial["prefix_tokens"] > 600
    assert trial["prefill_tokens"] > trial["prefix_tokens"]
    # Computed at least once (it was cold), and by no more items than the batch holds.
    assert 1 <= trial["items_that_computed_the_prefix"] <= 8
    assert trial["prefill_tokens_per_item"] * 8 == pytest.approx(trial["prefill_tokens"], abs=1)


async def test_bench_hash_phase_banks_part_of_the_texts(broker, engine, test_model, tmp_path):
    """The same texts without banks and with half of them banked at the model's own labels:
    the banked run sends the engine only the other half, and its verdicts check out."""
    config = _config(
        test_model,
        tmp_path,
        max_model_len=engine.max_model_len,
        policy_tokens=300,
        content_tokens=(20, 60),
        events=40,
        warmup_events=10,
        batch={"max_items": 8},
        phases=("hash",),
        known_share=0.5,
    )
    result = await _run(config, broker, engine.tokenizer, engine)
    phase = result["phases"]["hash"]
    assert "error" not in phase, phase
    assert phase["known_events"] == 20 and phase["known_over_none"] > 0
    banked = [
        line for path in (tmp_path / "banks").glob("*.txt") for line in path.read_text().split("\n")
    ]
    assert len([line for line in banked if line]) == 20
    for run in (phase["none"], phase["known"]):
        sat = run["saturation"]
        assert sat["items"] == sat["verdicts"] == 40 and sat["missing"] == 0
        assert run["labels"]["checked"] == 40 and run["labels"]["wrong"] == 0, run["labels"]
    assert (phase["none"]["engine_prompts"], phase["known"]["engine_prompts"]) == (40, 20)


async def test_bench_images_phase_checks_every_label(broker, tmp_path):
    """Images by URL over real HTTP: the engine limit and the worker (each starting its own
    engine on the seeing test model), every verdict checked against its image's colour, and
    the fetch + decode cost measured. Small and not timed: figures exist, labels are right."""
    from transformers import AutoTokenizer

    from worker.testing.seeing import build_seeing_model
    from worker.tools.bench.report import print_report

    model = build_seeing_model(REPO / ".cache" / "test-model-seeing")
    config = _config(
        model,
        tmp_path,
        max_model_len=4096,
        policy_tokens=300,
        batch={"max_items": 8},
        phases=("images",),
        image_events=30,
        image_size=256,
        image_cost_runs=3,
        wait_timeout_s=300.0,
    )
    tokenizer = AutoTokenizer.from_pretrained(str(model))
    result = await _run(config, broker, tokenizer)  # the worker with its own engine
    write_json(result, tmp_path / "bench.json")
    result = orjson.loads((tmp_path / "bench.json").read_bytes())
    images = result["phases"]["images"]
    assert "error" not in images, images
    limit, worker = images["engine_limit"], images["worker"]
    assert limit["items"] == 27 and limit["items_per_s"] > 0  # a tenth is warm-up
    sat = worker["saturation"]
    assert sat["items"] == sat["verdicts"] == 30 and sat["missing"] == sat["dead_letters"] == 0
    # Both the engine limit and the worker labelled every image as its colour says.
    assert limit["labels"]["checked"] == 27 and limit["labels"]["wrong"] == 0, limit["labels"]
    assert worker["labels"]["checked"] == 30 and worker["labels"]["wrong"] == 0, worker["labels"]
    assert 0 < worker["labels"]["expected_1"] < 30
    assert images["worker_over_engine"] > 0
    cost = images["fetch_decode"]
    assert cost["runs"] == 3 and cost["jpeg_bytes"] > 0
    assert 0 < cost["decode_cpu_ms"] and 0 < cost["fetch_decode_cpu_ms"]
    # Measured at 256 pixels: the 1024-pixel cost target has nothing to compare.
    assert result["targets"]["image_fetch_decode_cpu_ms"]["met"] is None
    assert result["targets"]["images_worker_over_engine"]["measured"] > 0
    print_report(result)
