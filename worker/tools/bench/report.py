"""The benchmark's result on screen (rich tables) and on disk (JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from .stats import saturated_rate

SYSTEMS = {
    "engine_limit": "1 engine limit: LLM.generate, one batch",
    "worker": "2 moderation-worker",
    "worker-remote": "2r moderation-worker, remote engine: vLLM OpenAI server",
    "naive": "3 naive peer: HTTP request per event",
    "worker-instant": "4 moderation-worker, instant engine",
    "raw-loop": "4 raw aiokafka consume-produce-commit",
}
# Runs inside the cache and shadow phases: (phase, run) -> label.
RUNS = {
    ("cache", "unique"): "5 worker, unique content",
    ("cache", "duplicates"): "5 worker, with copies",
    ("cache", "duplicates_without_cache"): "5 worker, with copies, cache off",
    ("shadow", "without"): "6 worker, no shadow",
    ("shadow", "with"): "6 worker, every event shadowed",
    ("hash", "none"): "7 worker, no hash banks",
    ("hash", "known"): "7 worker, banks hold part of the texts",
}


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")


def print_report(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    phases = result["phases"]
    console.print(_throughput(phases))
    if any("levels" in p for p in phases.values()):
        console.print(_latency(phases))
    if any("cache" in p for p in phases.values()):
        console.print(_cache(phases))
    if "hit_cost" in phases.get("cache", {}):
        cost = phases["cache"]["hit_cost"]
        console.print(f"verdict cache: {cost['cpu_us_per_hit']} µs CPU per event answered whole")
    if phases.get("shadow", {}).get("cpu_ms_per_shadowed_event") is not None:
        extra = phases["shadow"]["cpu_ms_per_shadowed_event"]
        console.print(f"shadow policy: {extra} ms CPU more per shadowed event")
    if "known_over_none" in phases.get("hash", {}):
        h = phases["hash"]
        console.print(
            f"hash banks holding {h['known_events']} of {h['none']['saturation']['items']} texts: "
            f"{_num(h['known_over_none'], 2)}x the rate without banks; engine prompts "
            f"{h['none'].get('engine_prompts', '-')} -> {h['known'].get('engine_prompts', '-')}"
        )
    if "runs" in phases.get("policies", {}):
        console.print(_policies(phases["policies"]))
    if "longest_gap_s" in phases.get("reload", {}):
        r = phases["reload"]
        console.print(
            f"pack of {r['policies']} policies: load {r['load_s']} s, compile {r['compile_s']} s, "
            f"catalog {r['catalog_mib']} MiB (peak {r['load_peak_mib']}); reload after "
            f"{r['reload_changed']} changes {r['reload_s']} s (peak +{r['reload_peak_mib']} MiB)"
        )
        console.print(
            f"under {r['offered_per_s']}/s, longest gap between verdicts (target <= 1 s): "
            f"{r['longest_gap_one_file_s']} s reloading one edited file (showed after "
            f"{r['reload_visible_after_s']} s), {r['longest_gap_all_files_s']} s reloading "
            f"every file edited (showed after {r['full_reload_visible_after_s']} s); "
            f"{r['longest_gap_before_edit_s']} s before the edits"
        )
    for trial in phases.get("cold", {}).get("trials", []):
        console.print(
            f"cold policy of {trial['prefix_tokens']} tokens, micro-batch of {trial['items']}: "
            f"{trial['items_that_computed_the_prefix']} computed the prefix (target 1), "
            f"{trial['prefill_tokens_per_item']} prefill tokens per item"
        )
    if "fetch_decode" in phases.get("images", {}):
        _print_images(phases["images"], console)
    console.print(_targets(result["targets"]))


def _print_images(phase: dict[str, Any], console: Console) -> None:
    limit, worker, cost = phase["engine_limit"], phase["worker"], phase["fetch_decode"]
    wrong = [run.get("labels", {}).get("wrong", "-") for run in (limit, worker)]
    console.print(
        f"images ({phase['image_size']} px JPEG, one per event): engine limit "
        f"{saturated_rate(limit):.1f}/s, worker {saturated_rate(worker):.1f}/s, ratio "
        f"{_num(phase['worker_over_engine'], 3)} (wrong labels: {wrong[0]} and {wrong[1]}); "
        f"per image CPU: decode {cost['decode_cpu_ms']} ms, fetch over HTTP + decode "
        f"{cost['fetch_decode_cpu_ms']} ms ({cost['jpeg_bytes']} bytes, photo-like)"
    )


def _throughput(phases: dict[str, Any]) -> Table:
    table = Table(title="throughput at saturation (steady state, warm-up excluded)")
    columns = ("items/s", "CPU ms/item", "own", "server API", "server engine", "wrong labels")
    columns += ("items", "verdicts", "dead letters", "missing")
    for column in ("system", *columns):
        table.add_column(column, justify="left" if column == "system" else "right")
    rows = [(label, phases.get(key)) for key, label in SYSTEMS.items()]
    diy = phases.get("diy", {})
    rows += [(f"3d DIY peer, {n} in flight", run) for n, run in diy.get("runs", {}).items()]
    if "error" in diy:
        rows.append(("3d DIY peer", diy))
    for (key, run), label in RUNS.items():
        phase = phases.get(key, {})
        rows.append((label, phase if "error" in phase else phase.get(run)))
    for label, phase in rows:
        if not phase:
            continue
        if "error" in phase:
            table.add_row(label, "failed", phase["error"][:60])
            continue
        sat = phase.get("saturation", phase)
        table.add_row(
            label,
            f"{saturated_rate(phase):.1f}",
            _num(phase.get("cpu_ms_per_item"), 3),
            _num(phase.get("process_cpu_ms_per_item"), 3),
            _num(phase.get("server_api_cpu_ms_per_item"), 3),
            _num(phase.get("server_engine_cpu_ms_per_item"), 3),
            str(phase.get("labels", {}).get("wrong", "-")),
            str(sat.get("items", "")),
            str(sat.get("verdicts", sat.get("items", ""))),
            str(sat.get("dead_letters", "")),
            str(sat.get("missing", "")),
        )
    return table


def _latency(phases: dict[str, Any]) -> Table:
    table = Table(title="end-to-end latency under open-loop load (produce -> verdict read)")
    for column in ("system", "offered", "offered/s", "achieved/s", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "system" else "right")
    for key in ("worker", "worker-remote", "naive"):
        for level in phases.get(key, {}).get("levels", []):
            if "skipped" in level:
                table.add_row(SYSTEMS[key], "fixed", f"{level['offered_per_s']:.1f}", "skipped")
                continue
            lat = level["latency_ms"]
            table.add_row(
                SYSTEMS[key],
                _fraction(level["offered_fraction"]),
                f"{level['offered_per_s']:.1f}",
                _num(level["achieved_per_s"]),
                _num(lat.get("p50")),
                _num(lat.get("p95")),
                _num(lat.get("p99")),
            )
    return table


def _cache(phases: dict[str, Any]) -> Table:
    table = Table(title="prefill per prompt: tokens computed vs read from the prefix cache")
    columns = ("prefix", "prompt", "cached", "computed", "of prompt", "of prefix")
    for column in ("system", "policy", *columns):
        table.add_column(column, justify="left" if column in ("system", "policy") else "right")
    for key in ("engine_limit", "worker", "worker-remote", "naive"):
        for policy, row in phases.get(key, {}).get("cache", {}).items():
            table.add_row(
                SYSTEMS[key].split(":")[0],
                policy,
                str(row["prefix_tokens"]),
                f"{row['prompt_tokens_mean']:.0f}",
                f"{row['cached_tokens_mean']:.0f}",
                f"{row['computed_tokens_mean']:.0f}",
                f"{row['cached_share_of_prompt']:.1%}",
                f"{row['cached_share_of_policy']:.1%}",
            )
    return table


def _policies(phase: dict[str, Any]) -> Table:
    table = Table(title="distinct policies, Zipf traffic: the worker on one engine")
    columns = ("policies", "prefix tokens mean", "items/s", "÷ fewest", "cache hit ratio")
    columns += ("prefill tokens/item", "wrong labels", "compile s")
    for column in columns:
        table.add_column(column, justify="right")
    for count, run in phase["runs"].items():
        if "error" in run:
            table.add_row(count, "failed", run["error"][:60])
            continue
        prefill = run.get("prefill", {})
        table.add_row(
            count,
            _num(run.get("policy_tokens_mean"), 0),
            f"{saturated_rate(run):.1f}",
            _num(phase["over_fewest"].get(count), 2),
            _num(prefill.get("hit_ratio"), 3),
            _num(prefill.get("computed_tokens_per_prompt"), 0),
            str(run.get("labels", {}).get("wrong", "-")),
            _num(run.get("compile_s"), 1),
        )
    return table


def _targets(targets: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="ratios against targets")
    for column in ("measure", "target", "measured", "met"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for name, row in targets.items():
        met = {True: "yes", False: "NO", None: "not measured"}[row["met"]]
        bound = "<=" if row.get("at_most") else ">="
        table.add_row(name, f"{bound} {row['target']}", _num(row["measured"], 3), met)
    return table


def _fraction(value: float | None) -> str:
    return "fixed" if value is None else f"{value:.0%}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
