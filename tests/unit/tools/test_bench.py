"""The benchmark's pure parts: statistics, schedules, ratios, option parsing, policy fitting,
the hash phase's banks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from worker.hashbanks import decide, load_banks
from worker.tools.bench.command import parse_engine_args, parse_levels, parse_range
from worker.tools.bench.config import BenchConfig
from worker.tools.bench.hashed import write_banks
from worker.tools.bench.naive import cli_flags, server_command
from worker.tools.bench.stats import (
    cache_summary,
    latency_summary,
    open_loop_schedule,
    percentile,
    ratio,
    steady_rate,
)
from worker.tools.bench.summary import ratios, targets
from worker.tools.bench.workload import Workload, copy_sources, fit_policy_text, make_events


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
        "diy": {**sat(30), "labels": {"checked": 10, "wrong": 0, "expected_1": 3}},
    }


def test_ratios_and_targets():
    phases = _phases(worker=90, engine=100, naive=20, instant=600, raw=1000)
    assert ratios(phases) == {
        "worker_over_engine": pytest.approx(0.9),
        "worker_over_naive": pytest.approx(4.5),
        "remote_over_worker": pytest.approx(85 / 90),
        "remote_over_naive": pytest.approx(4.25),
        "instant_worker_over_raw_loop": pytest.approx(0.6),
        "worker_over_diy": pytest.approx(3.0),
        "remote_over_diy": pytest.approx(85 / 30),
    }
    met = {name: row["met"] for name, row in targets(phases).items()}
    assert met == {
        "worker_over_engine": True,
        "worker_over_naive": True,
        "remote_over_worker": True,
        "remote_over_naive": False,
        "instant_worker_over_raw_loop": False,
        "worker_over_diy": True,
        "min_policy_prefix_cached": True,
        "cache_duplicates_over_unique": None,  # the cache phase did not run
        "policies_1000_over_1": None,  # nor the policies phase
        "images_worker_over_engine": None,  # nor the images phase
        "image_fetch_decode_cpu_ms": None,
    }
    phases["cache"] = {"duplicates_over_unique": 1.45}
    assert targets(phases)["cache_duplicates_over_unique"]["met"] is True
    phases["policies"] = {"runs": {"1": {}, "1000": {}}, "over_fewest": {"1": 1.0, "1000": 0.6}}
    assert targets(phases)["policies_1000_over_1"] == {"target": 0.7, "measured": 0.6, "met": False}


def test_image_targets_a_ratio_and_a_cost_at_most():
    phases = {
        "images": {
            "image_size": 1024,
            "worker_over_engine": 0.93,
            "fetch_decode": {"fetch_decode_cpu_ms": 10.4},
        }
    }
    rows = targets(phases)
    assert rows["images_worker_over_engine"]["met"] is True
    assert rows["image_fetch_decode_cpu_ms"] == {
        "target": 10.0, "measured": 10.4, "met": False, "at_most": True
    }  # fmt: skip
    phases["images"]["image_size"] = 256  # the cost target is for 1024-pixel images
    assert targets(phases)["image_fetch_decode_cpu_ms"]["met"] is None


def test_a_system_with_wrong_labels_has_no_rate_to_compare():
    phases = _phases(worker=90, engine=100, naive=20, instant=600, raw=1000)
    phases["diy"]["labels"]["wrong"] = 1  # fast but wrong: it does not count
    assert ratios(phases)["worker_over_diy"] is None
    assert targets(phases)["worker_over_diy"]["met"] is None


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


def test_server_takes_the_in_process_engines_step_sizes_unless_the_run_sets_them():
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    tokens, seqs = EngineArgs.get_batch_defaults(1)

    def flag(command: list[str], name: str) -> str:
        return command[command.index(name) + 1]

    command = server_command(BenchConfig(model="m"), 8000)
    assert flag(command, "--max-num-batched-tokens") == str(tokens[UsageContext.LLM_CLASS])
    assert flag(command, "--max-num-seqs") == str(seqs[UsageContext.LLM_CLASS])
    command = server_command(BenchConfig(model="m", engine_args={"max_num_seqs": 8}), 8000)
    assert flag(command, "--max-num-seqs") == "8"
    assert command.count("--max-num-seqs") == 1


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
    with pytest.raises(ValueError, match="known share"):
        BenchConfig(model="m", known_share=0.0)


def test_hash_phase_banks_the_share_at_each_events_label(tmp_path):
    config = BenchConfig(model="m", policies_per_event=2)
    contents = [f"text number {n}" for n in range(10)]
    workload = Workload(None, contents, make_events(config, ["a", "b", "c"], contents, "h"))  # type: ignore[arg-type]
    labels = {event.id: n % 2 for n, event in enumerate(workload.events)}
    assert write_banks(tmp_path, workload, 0.6, 1, labels) == 6
    banks = load_banks(tmp_path, 31)
    decided = {}
    for event, content in zip(workload.events, contents, strict=True):
        matches = banks.match_text(content)
        if matches:
            [decision] = {d.label for d in decide(matches, ["a", "b", "c"]).values()}
            decided[event.id] = decision
    # Six events banked, each at its own label, for every policy the workload uses.
    assert len(decided) == 6 and all(label == labels[i] for i, label in decided.items())
    assert {b.policies for b in banks.banks} == {("a", "b", "c")}
    # Without known labels (a model other than the test model) every banked text is known bad.
    assert write_banks(tmp_path, workload, 0.3, 1, None) == 3
    assert [(b.name, b.label) for b in load_banks(tmp_path, 31).banks] == [("known-bad", 1)]


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


def test_diy_offsets_commit_below_the_lowest_event_in_flight():
    from aiokafka import TopicPartition

    from worker.tools.bench.diy import Offsets

    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    offsets = Offsets()
    for n in (5, 6, 7):
        offsets.taken(a, n)
    offsets.taken(b, 0)
    offsets.done(a, 6)  # acked out of order: 5 still holds the commit back
    assert offsets.committable() == {a: 5, b: 0}
    offsets.done(a, 5)
    offsets.done(b, 0)
    assert offsets.committable() == {a: 7, b: 1}
    offsets.done(a, 7)
    assert offsets.committable() == {a: 8, b: 1}


def test_diy_reads_p_yes_from_chat_top_logprobs():
    import math

    from worker.tools.bench.diy import p_yes

    def reply(top: dict[str, float]) -> dict:
        alts = [{"token": t, "logprob": math.log(p)} for t, p in top.items()]
        return {"choices": [{"logprobs": {"content": [{"top_logprobs": alts}]}}]}

    assert p_yes(reply({"1": 0.6, "0": 0.2, "x": 0.2})) == pytest.approx(0.75)
    assert p_yes(reply({"0": 0.9, "x": 0.1})) == 0.0
    assert p_yes(reply({"x": 1.0})) == 0.0


def test_expected_labels_follow_the_test_models_rule(tmp_path):
    from transformers import AutoTokenizer

    from worker.testing.devmodel import DEFAULT_DIR, build_test_model
    from worker.testing.words import TRIGGER_WORDS
    from worker.tools.bench.workload import (
        expected_labels,
        is_test_model,
        load_workload,
        write_policies,
    )

    model = build_test_model(DEFAULT_DIR)
    assert is_test_model(str(model)) and not is_test_model("zentropi-ai/cope-b-a4b")
    tokenizer = AutoTokenizer.from_pretrained(model)
    config = BenchConfig(
        model=str(model),
        policy_dir=Path(__file__).parents[3] / "policies",
        max_model_len=4096,
        policy_tokens=200,
        content_tokens=(10, 30),
        events=60,
        warmup_events=10,
        workdir=tmp_path,
    )
    write_policies(config, tokenizer)
    workload = load_workload(config, tokenizer, 60, "labels")
    labels = expected_labels(workload, tokenizer)

    def words(text: str) -> set[str]:
        return {w.strip(".,:;()") for w in text.split()} & set(TRIGGER_WORDS)

    for event, content in zip(workload.events, workload.contents, strict=True):
        named = set().union(
            *(words(workload.catalog.entries[p].policy.text) for p in event.policies)
        )
        assert labels[event.id] == int(bool(named & words(content))), event.id
    assert 0 < sum(labels.values()) < len(labels)  # both labels occur


def test_many_policies_are_long_tailed_in_length_and_popularity():
    from worker.tools.bench.many import policy_lengths, zipf_picks

    lengths = policy_lengths(2000, 50, 2900, "7")
    assert min(lengths) >= 50 and max(lengths) <= 2900
    assert sum(1 for n in lengths if n < 400) > sum(1 for n in lengths if n > 2000)
    assert policy_lengths(2000, 50, 2900, "7") == lengths  # the same seed, the same pack
    picks = Counter(zipf_picks(1000, 20_000, "7"))
    assert picks[0] > picks[1] > picks[9] > 0
    assert picks[0] / picks[9] == pytest.approx(10**1.1, rel=0.3)
    assert len(picks) > 300  # a long tail: most policies are named at least once


def test_policy_fingerprints_tell_policies_apart_by_their_shortest_distinct_lead():
    from types import SimpleNamespace

    from worker.tools.bench.recorder import PolicyFingerprints

    prefixes = {"a": (1, 2, 3, 4), "b": (1, 2, 3, 5), "c": (1, 9, 9, 9), "d": (7, 7, 7, 7)}
    entries = {
        p: SimpleNamespace(prompt=SimpleNamespace(prefix=ids)) for p, ids in prefixes.items()
    }
    fingerprints = PolicyFingerprints(SimpleNamespace(entries=entries))
    assert fingerprints.lead == 4  # "a" and "b" share three tokens
    for policy, ids in prefixes.items():
        assert fingerprints.policy_of([*ids, 42, 43]) == policy
    assert fingerprints.policy_of([5, 5, 5, 5]) == "?"


def test_a_pack_of_one_has_the_mean_length_of_the_larger_packs():
    """The one-policy baseline is length-matched: its policy is as long as an item's policy
    is on average in a larger pack (lengths do not depend on popularity)."""
    from worker.tools.bench.many import policy_lengths

    (single,) = policy_lengths(1, 50, 2900, "7")
    pack = policy_lengths(20_000, 50, 2900, "7")
    assert single == pytest.approx(sum(pack) / len(pack), rel=0.03)
