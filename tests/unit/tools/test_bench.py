"""The benchmark's pure parts: statistics, schedules, ratios, option parsing, policy fitting."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from worker.tools.bench.command import parse_engine_args, parse_levels, parse_range
from worker.tools.bench.config import BenchConfig
from worker.tools.bench.naive import cli_flags
from worker.tools.bench.stats import (
    cache_summary,
    latency_summary,
    open_loop_schedule,
    percentile,
    ratio,
    steady_rate,
)
from worker.tools.bench.summary import ratios, targets
from worker.tools.bench.workload import copy_sources, fit_policy_text, make_events


def test_percentile_interpolates_between_closest_ranks():
    values = [float(v) for v in range(1, 11)]  # 1..10
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 5.5
    assert percentile(values, 95) == pytest.approx(9.55)
    assert percentile(values, 100) == 10.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0  # order of input does not matter


def test_percentile_refuses_empty_input_and_bad_quantiles():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary_is_in_milliseconds():
    summary = latency_summary([0.1] * 98 + [0.5, 1.0])
    assert summary["p50"] == 100.0
    assert summary["max"] == 1000.0
    assert summary["p95"] == 100.0
    assert 100.0 < summary["p99"] <= 1000.0
    assert latency_summary([]) == {}


def test_steady_rate_leaves_out_the_warm_up():
    # A slow start (10 s for the first 2 items), then one item every 0.1 s.
    arrivals = [0.0, 10.0] + [10.0 + 0.1 * n for n in range(1, 101)]
    assert steady_rate(arrivals, skip=2) == pytest.approx(10.0)
    assert steady_rate(arrivals, skip=0) < 10.0
    with pytest.raises(ValueError):
        steady_rate([1.0, 2.0], skip=1)
    with pytest.raises(ValueError):
        steady_rate([5.0, 5.0, 5.0], skip=0)


def test_steady_rate_of_bursts_is_the_burst_rate():
    # 8 items published together every second: 8 items/s, whichever burst the window starts in.
    arrivals = [float(second) for second in range(20) for _ in range(8)]
    assert steady_rate(arrivals, skip=8) == pytest.approx(8.0, rel=0.05)
    assert steady_rate(arrivals, skip=15) == pytest.approx(8.0, rel=0.05)


def test_ratio_is_none_when_a_side_is_missing():
    assert ratio(90.0, 100.0) == pytest.approx(0.9)
    assert ratio(None, 100.0) is None
    assert ratio(90.0, None) is None
    assert ratio(90.0, 0.0) is None


def test_open_loop_schedule_is_evenly_spaced_at_the_rate():
    offsets = open_loop_schedule(rate=4.0, duration_s=2.5)
    assert offsets == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25]
    assert open_loop_schedule(rate=0.1, duration_s=1.0) == [0.0]  # at least one item
    with pytest.raises(ValueError):
        open_loop_schedule(rate=0.0, duration_s=1.0)
    with pytest.raises(ValueError):
        open_loop_schedule(rate=1.0, duration_s=0.0)


def test_cache_summary_per_policy():
    usage = [("a", 1100, 1000), ("a", 1200, 1000), ("b", 600, 0)]
    summary = cache_summary(usage, {"a": 1010, "b": 500})
    assert summary["a"]["prompts"] == 2
    assert summary["a"]["computed_tokens_mean"] == 150.0
    assert summary["a"]["cached_share_of_prompt"] == pytest.approx(2000 / 2300, abs=1e-4)
    assert summary["a"]["cached_share_of_policy"] == pytest.approx(1000 / 1010, abs=1e-4)
    assert summary["b"]["cached_share_of_policy"] == 0.0


def _phases(
    worker: float, engine: float, naive: float, instant: float, raw: float, remote: float = 85
) -> dict:
    def sat(rate: float) -> dict:
        return {"saturation": {"items_per_s": rate}}

    return {
        "engine_limit": {"items_per_s": engine},
        "worker": {**sat(worker), "cache": {"a": {"cached_share_of_policy": 0.95}}},
        "worker-remote": sat(remote),
        "naive": sat(naive),
        "worker-instant": sat(instant),
        "raw-loop": sat(raw),
    }


def test_ratios_and_targets():
    phases = _phases(worker=90, engine=100, naive=20, instant=600, raw=1000)
    assert ratios(phases) == {
        "worker_over_engine": pytest.approx(0.9),
        "worker_over_naive": pytest.approx(4.5),
        "remote_over_worker": pytest.approx(85 / 90),
        "remote_over_naive": pytest.approx(4.25),
        "instant_worker_over_raw_loop": pytest.approx(0.6),
    }
    met = {name: row["met"] for name, row in targets(phases).items()}
    assert met == {
        "worker_over_engine": True,
        "worker_over_naive": True,
        "remote_over_worker": True,
        "remote_over_naive": False,
        "instant_worker_over_raw_loop": False,
        "min_policy_prefix_cached": True,
        "cache_duplicates_over_unique": None,  # the cache phase did not run
    }
    phases["cache"] = {"duplicates_over_unique": 1.45}
    assert targets(phases)["cache_duplicates_over_unique"]["met"] is True


def test_copies_are_the_share_asked_and_heavy_tailed():
    sources = copy_sources(1000, 0.3, "7")
    assert sources == copy_sources(1000, 0.3, "7")  # deterministic
    assert sources[:50] == list(range(50))  # the popular events are originals
    copies = [s for n, s in enumerate(sources) if s != n]
    assert len(copies) == 300 and all(s < 50 for s in copies)
    counts = Counter(copies).most_common()
    assert counts[0][0] == 0  # the most popular event is copied most
    assert sum(n for _, n in counts[:5]) > len(copies) / 3  # a few events make most copies
    short = copy_sources(60, 0.3, "7")  # fewer events than the popular pool and copies
    assert sum(s != n for n, s in enumerate(short)) == 18


def test_a_copy_has_the_content_and_policies_of_its_original():
    config = BenchConfig(model="m", policies_per_event=2)
    contents = [f"text {n}" for n in range(6)]
    events = make_events(config, ["a", "b", "c"], contents, "t", sources=[0, 1, 2, 0, 4, 1])
    assert [e.policies for e in events] == [
        ["a", "b"], ["b", "c"], ["c", "a"], ["a", "b"], ["b", "c"], ["b", "c"],
    ]  # fmt: skip


def test_targets_not_measured_are_none_not_failures():
    rows = targets({"engine_limit": {"items_per_s": 50.0}})
    assert all(row["measured"] is None and row["met"] is None for row in rows.values())


def test_engine_args_parse_json_values_and_keep_text():
    args = parse_engine_args(["load_format=dummy", "enforce-eager=true", "max_num_seqs=512"])
    assert args == {"load_format": "dummy", "enforce_eager": True, "max_num_seqs": 512}
    with pytest.raises(ValueError):
        parse_engine_args(["no-equals-sign"])
    assert parse_levels("0.25, 1,210/s") == ((0.25, 1.0), (210.0,))
    assert parse_range("50:400") == (50, 400)
    assert parse_range("150") == (150, 150)


def test_server_flags_from_engine_args():
    flags = cli_flags({"enforce_eager": True, "block_size": 32, "enable_x": False, "o": {"a": 1}})
    assert flags == ["--enforce-eager", "--block-size", "32", "--no-enable-x", "--o", '{"a":1}']


def test_config_round_trips_through_json_and_splits_engine_args():
    config = BenchConfig(
        model="m",
        engine_args={"load_format": "dummy", "enforce_eager": True},
        content_tokens=(150, 150),
        levels=(0.5, 1.0),
        workdir=Path("/tmp/w"),
    )
    again = BenchConfig.from_json(config.to_json())
    assert again == config
    settings = config.engine_settings()
    assert settings.load_format == "dummy"
    assert settings.extra_args == {"enforce_eager": True}
    with pytest.raises(ValueError):
        BenchConfig(model="m", phases=("nope",))
    with pytest.raises(ValueError):
        BenchConfig(model="m", events=10, warmup_events=10)


class _Words:
    """A tokenizer where every whitespace-separated word is one token."""

    def encode(self, text: str, **_: object) -> list[int]:
        return [len(word) for word in text.split()]


def test_fit_policy_cuts_at_a_line_end_within_the_budget():
    text = "\n".join(f"line {n} has five words" for n in range(10))  # 5 tokens a line
    fitted = fit_policy_text(_Words(), text, [], target=23)
    assert fitted.splitlines() == text.splitlines()[:4]  # 20 tokens; a 5th line would be 25


def test_fit_policy_extends_a_short_policy_with_the_others():
    more = ["one two three four", "five six"]
    extended = fit_policy_text(_Words(), "short policy", more, 6)
    assert extended == "short policy\n\none two three four"
    assert fit_policy_text(_Words(), "short policy", more, 5) == "short policy"


class _Digits:
    """Just enough tokenizer for the instant engine's start-up check."""

    def encode(self, text: str, **_: object) -> list[int]:
        return [ord(ch) for ch in text]


async def test_instant_engine_is_deterministic_and_shaped_like_moderation_traffic():
    from worker.engine import EngineError
    from worker.engine.instant import InstantClassifier

    engine = InstantClassifier(_Digits())
    prompts = [[7] * 2000 + [n, n + 1, n * 3] for n in range(2000)]
    scores = [(await engine.score(p)).p_yes for p in prompts]
    assert scores == [(await engine.score(p)).p_yes for p in prompts]
    share = {value: scores.count(value) / len(scores) for value in set(scores)}
    assert set(share) == {0.02, 0.5, 0.98}
    assert share[0.02] > 0.75 and 0.05 < share[0.98] < 0.15 and 0.02 < share[0.5] < 0.08
    assert (await engine.score(prompts[0])).prompt_tokens == 2003
    with pytest.raises(EngineError):
        await engine.score([])


def test_a_failed_phase_is_not_measured():
    phases = _phases(worker=90, engine=100, naive=20, instant=600, raw=1000)
    phases["naive"] = {"error": "RuntimeError: OpenAI server exited"}
    assert ratios(phases)["worker_over_naive"] is None
    assert targets(phases)["worker_over_naive"]["met"] is None
    assert targets(phases)["worker_over_engine"]["met"] is True
