"""The ``moderation-worker`` command line."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from .cli_common import (
    ConfigOpt,
    ModelOpt,
    PoliciesOpt,
    TokenizerOpt,
    die,
    settings_for,
    tool_settings,
)
from .config import Settings
from .errors import WorkerError
from .policies import load_policies
from .tools.evaluate.cli import eval_app

app = typer.Typer(
    help="Streaming content moderation: Kafka in, a policy-steered classifier, verdicts out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
policies_app = typer.Typer(help="Work with policy files.", no_args_is_help=True)
app.add_typer(policies_app, name="policies")
app.add_typer(eval_app, name="eval")


@app.command()
def run(config: ConfigOpt = None, model: ModelOpt = None, policies: PoliciesOpt = None) -> None:
    """Run the worker: consume, classify, publish, commit. Stops cleanly on SIGTERM."""
    from .app import run_worker

    _serve(settings_for(config, model, policies), run_worker)


def _serve(settings: Settings, command: Callable[[Settings], Awaitable[int]]) -> None:
    """Run a long-lived command with its logs on stdout; a WorkerError ends it in one line."""
    from .observability.telemetry import configure_logging

    configure_logging(settings.log)
    try:
        code = asyncio.run(command(settings))
    except WorkerError as exc:
        die(str(exc), code=exc.exit_code)
    raise typer.Exit(code)


@app.command()
def classify(
    text: Annotated[
        str | None, typer.Argument(help="Text to classify; omit to read JSONL events.")
    ] = None,
    policy: Annotated[
        list[str] | None, typer.Option("--policy", "-p", help="Policy id (repeatable).")
    ] = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    policies: PoliciesOpt = None,
) -> None:
    """Classify one text, or content events as JSON lines on stdin; print verdicts as JSONL."""
    from .tools.classify_lines import classify_lines

    settings = tool_settings(config, model, policies)
    if text is not None:
        lines, origin = [orjson.dumps({"id": "cli", "content": text})], "argv"
    else:
        lines, origin = sys.stdin, "stdin"
    try:
        code = asyncio.run(classify_lines(settings, lines, origin, policy or None))
    except WorkerError as exc:
        die(str(exc), code=exc.exit_code)
    raise typer.Exit(code)


@policies_app.command("check")
def policies_check(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Policy directory; default policies.dir (config, env)."),
    ] = None,
    tokenizer: TokenizerOpt = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 on warnings too (for CI).")
    ] = False,
    config: ConfigOpt = None,
    model: ModelOpt = None,
) -> None:
    """Check the pack that will be deployed, file by file: loaded (id, title, prompt tokens,
    room for content) or why not, and warnings."""
    from .preflight import load_kv_shape
    from .tools.pack_check import check_pack, image_layout

    settings = settings_for(config, model, directory)
    try:
        tok, max_len = _tokenizer_and_limit(settings, tokenizer)
        source = _model_files(settings, tokenizer)
        kv = load_kv_shape(settings, source)
        tally = check_pack(settings, tok, max_len, typer.echo, kv, image_layout(settings, source))
    except WorkerError as exc:
        die(str(exc), code=exc.exit_code)
    raise typer.Exit(1 if tally.errors or (strict and tally.warnings) else 0)


def _tokenizer_and_limit(settings: Settings, tokenizer: str | None) -> tuple[Any, int]:
    """The tokenizer (``--tokenizer``, else the engine's) and the context it counts against."""
    from .preflight import load_tokenizer, model_max_len

    engine = settings.engine
    tok = load_tokenizer(_model_files(settings, tokenizer))
    return tok, model_max_len(engine.max_model_len, tokenizer or engine.model, tok)


def _model_files(settings: Settings, tokenizer: str | None) -> str:
    """Where the checks read the model's files: ``--tokenizer``, else the engine's."""
    return tokenizer or settings.engine.tokenizer or settings.engine.model


@app.command()
def prompt(
    text: Annotated[str, typer.Argument(help="Content to build the prompt for.")],
    policy: Annotated[str, typer.Option("--policy", "-p", help="Policy id.")],
    ids: Annotated[bool, typer.Option("--ids", help="Print the token ids as a JSON list.")] = False,
    tokenizer: TokenizerOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    policies: PoliciesOpt = None,
    images: Annotated[
        int, typer.Option("--images", min=0, help="Show where N images (or video frames) go.")
    ] = 0,
) -> None:
    """Print exactly what the engine receives for TEXT and one policy (needs only the tokenizer)."""
    from .tools.prompt_view import format_prompt, image_note, prompt_ids

    settings = settings_for(config, model, policies)
    engine = settings.engine
    try:
        tok, max_len = _tokenizer_and_limit(settings, tokenizer)
        registry = load_policies(settings.policies.dir, settings.policies.default)
        each = _tokens_per_image(_model_files(settings, tokenizer)) if images else None
        built = prompt_ids(tok, registry, policy, text, max_len, engine.overlong, images, each)
    except (WorkerError, ValueError) as exc:
        die(str(exc), code=exc.exit_code)
    sys.stdout.write(format_prompt(tok, built, ids))
    if images:
        typer.echo(image_note(images, each, built, max_len), err=True)


def _tokens_per_image(model: str) -> int | None:
    from .engine.image_tokens import ImageTokensUnknown, model_tokens_per_image

    try:
        return model_tokens_per_image(model)
    except ImageTokensUnknown:
        return None  # the note says it is not known


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9092,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Start the embedded Kafka-compatible broker (in memory; for local use and tests)."""
    from .tools.broker import BrokerError, EmbeddedBroker

    try:
        with EmbeddedBroker(port=port, host=host) as running:
            typer.echo(f"broker listening on {running.bootstrap_servers} (Ctrl-C to stop)")
            while running.process and running.process.poll() is None:
                time.sleep(0.5)
    except BrokerError as exc:
        die(str(exc), code=exc.exit_code)
    except KeyboardInterrupt:
        pass


@app.command()
def demo(
    model: ModelOpt = None,
    events: Annotated[int, typer.Option(help="Sample events to stream.")] = 20,
) -> None:
    """Embedded broker + worker on the CPU engine: stream sample events, print verdicts."""
    from .tools.demo import run_demo

    raise typer.Exit(run_demo(model, events))


LEVELS = "0.25,0.5,0.75,1"  # the bench's load levels: fractions of the saturated rate
PHASES_HELP = "engine,worker,remote,naive,overhead (default); diy,cache,shadow,policies,reload,"
PHASES_HELP += "cold,hash,images"


def _opt(kind: Any, text: str, *names: str) -> Any:
    """An annotated option type, so that each of bench's many options takes one line."""
    return Annotated[kind, typer.Option(*names, help=text)]


def IntOpt(text: str) -> Any:  # noqa: N802 (used as a type)
    return _opt(int, text)


def FloatOpt(text: str) -> Any:  # noqa: N802
    return _opt(float, text)


def StrOpt(text: str) -> Any:  # noqa: N802
    return _opt(str, text)


EngineArgOpt = _opt(list[str] | None, "vLLM engine argument KEY=VALUE (repeatable).")
MaxItemsOpt = _opt(int | None, "batch.max_items")
LingerOpt = _opt(float | None, "batch.linger_ms")
InFlightOpt = _opt(int | None, "batch.max_in_flight")
BootstrapOpt = _opt(str | None, "Use this broker instead of an embedded one.")
WorkdirOpt = _opt(Path, "Fitted policies, images, logs.")
OutOpt = _opt(Path | None, "Write the result as JSON.", "--out")
FETCH_WAIT = "Longest a broker may hold the systems' fetches (ms)."
DUPLICATES = "cache phase: share of events copying an earlier one (Zipf)."


@app.command()
def bench(
    model: ModelOpt = None,
    policies: _opt(Path, "Policy pack to fit.") = Path("policies"),
    engine_arg: EngineArgOpt = None,
    max_model_len: IntOpt("Engine max_model_len.") = 8192,
    policy_tokens: IntOpt("Tokens per policy (cut or extended).") = 2000,
    content_tokens: StrOpt("Content tokens MIN:MAX.") = "50:400",
    policies_per_event: IntOpt("Policies per event.") = 1,
    events: IntOpt("Events in each saturated run.") = 600,
    warmup: IntOpt("Leading events left out of rates.") = 100,
    levels: StrOpt("Loads: fractions of max, or N/s.") = LEVELS,
    level_seconds: FloatOpt("Seconds measured per load.") = 20.0,
    level_warmup_seconds: FloatOpt("Unmeasured lead-in.") = 3.0,
    overhead_events: IntOpt("Events per overhead run.") = 5000,
    phases: StrOpt(PHASES_HELP) = "",
    diy_in_flight: StrOpt("diy: events in flight, a run each.") = "64,128,256",
    policy_counts: StrOpt("policies phase: distinct policies, a run each.") = "1,10,100,1000,10000",
    many_policy_words: StrOpt("policies: words MIN:MAX.") = "50:2900",
    image_events: IntOpt("images phase: events of one image each.") = 300,
    image_size: IntOpt("images phase: the images' side in pixels.") = 1024,
    max_items: MaxItemsOpt = None,
    linger_ms: LingerOpt = None,
    max_in_flight: InFlightOpt = None,
    partitions: IntOpt("Partitions of the content topic.") = 3,
    fetch_max_wait_ms: IntOpt(FETCH_WAIT) = 500,
    bootstrap: BootstrapOpt = None,
    duplicate_share: FloatOpt(DUPLICATES) = 0.3,
    known_share: FloatOpt("hash phase: share of events whose text a hash bank holds.") = 0.3,
    shadow_sample: FloatOpt("Share of events a draft policy shadows in the worker runs.") = 0.0,
    seed: IntOpt("Workload seed.") = 7,
    workdir: WorkdirOpt = Path(".cache/bench"),
    out: OutOpt = None,
) -> None:
    """Measure the worker against its engine's limit, a naive peer and a raw Kafka loop."""
    options = dict(locals())
    from .tools.bench.command import run_command

    options["policy_dir"] = options.pop("policies")
    options["warmup_events"] = options.pop("warmup")
    try:
        raise typer.Exit(run_command(options))
    except ValueError as exc:
        die(str(exc))


@app.command()
def coop(config: ConfigOpt = None) -> None:
    """Connect the review topic to ROOST's Coop: reports out, decision webhooks in."""
    from .coop.command import run_adapter

    _serve(settings_for(config), run_adapter)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
