"""``moderation-worker eval``: one subcommand per question, each with its own options.

``eval dataset``: how policies do on a labelled sample (starts the engine). ``eval shadow``:
which decisions a shadow policy would change (reads its records). ``eval decisions``: the
precision and recall of automatic decisions, from reviewers' decisions (no engine).

The flag forms from before the subcommands (``eval --dataset F``, ``eval --shadow S``,
``eval --decisions D``) still run, rewritten to their subcommand with a one-line warning.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ...cli_common import ConfigOpt, ModelOpt, PoliciesOpt, die, tool_settings
from ...errors import WorkerError

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Report directory.")]
PrecisionOpt = Annotated[
    float | None, typer.Option(min=0.0, max=1.0, help="Suggest a band for this precision.")
]
RecallOpt = Annotated[
    float | None, typer.Option(min=0.0, max=1.0, help="Suggest a band for this recall.")
]
BudgetOpt = Annotated[
    float | None, typer.Option(min=0.0, max=1.0, help="Suggest a band for this review share.")
]
REPORT = Path("eval-report")


class _OldForms(TyperGroup):
    """The ``eval`` group, which also takes the flag forms from before its subcommands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0].startswith("-") and args[0] != "--help":
            args, old, new = rewrite_old_form(args)
            typer.echo(f'warning: "eval {old}" is deprecated; use "eval {new}"', err=True)
        return super().parse_args(ctx, args)


def rewrite_old_form(args: list[str]) -> tuple[list[str], str, str]:
    """(the subcommand's arguments, the old form, the new one) for flags without a
    subcommand: ``--shadow S`` wins (as it did), then ``--decisions D``, else a dataset."""
    for flag in ("--shadow", "--decisions"):
        source, rest = _take(args, (flag,))
        if source is None:
            continue
        mode = flag.removeprefix("--")
        if mode == "decisions" and _take(rest, ("--dataset", "-d", "--contrastive"))[0]:
            die("pass either --decisions or --dataset/--contrastive, not both")
        return [mode, source, *rest], f"{flag} SOURCE", f"{mode} SOURCE"
    dataset, rest = _take(args, ("--dataset", "-d"))
    if dataset is not None:
        return ["dataset", dataset, *rest], "--dataset FILE", "dataset FILE"
    if _take(rest, ("--contrastive",))[0] is not None:  # contrastive pairs alone
        return ["dataset", *rest], "--contrastive PAIRS", "dataset --contrastive PAIRS"
    return ["dataset", *rest], "OPTIONS", "dataset OPTIONS"


def _take(args: list[str], flags: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """The value of the first of ``flags`` in ``args`` (``--flag V`` or ``--flag=V``), and
    the arguments without it."""
    for index, arg in enumerate(args):
        name, equals, value = arg.partition("=")
        if name in flags and equals:
            return value, args[:index] + args[index + 1 :]
        if arg in flags and index + 1 < len(args):
            return args[index + 1], args[:index] + args[index + 2 :]
    return None, args


eval_app = typer.Typer(
    cls=_OldForms,
    help="Measure policies: on a labelled sample, against a shadow policy, or against "
    "reviewers' decisions.",
    no_args_is_help=True,
)


@eval_app.command("dataset")
def dataset_command(
    dataset: Annotated[
        Path | None, typer.Argument(help="Golden JSONL: id, content, label.", show_default=False)
    ] = None,
    policy: Annotated[
        str | None, typer.Option("--policy", "-p", help="Policy id or file for rows naming none.")
    ] = None,
    contrastive: Annotated[
        Path | None, typer.Option(help="JSONL pairs: content, policy_pos, policy_neg.")
    ] = None,
    compare: Annotated[
        str | None, typer.Option(help="Another version of --policy (file or id), side by side.")
    ] = None,
    out: OutOpt = REPORT,
    target_precision: PrecisionOpt = None,
    target_recall: RecallOpt = None,
    review_budget: BudgetOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    policies: PoliciesOpt = None,
) -> None:
    """Metrics, threshold suggestions and steerability on a labelled sample.

    Scores DATASET (golden rows), --contrastive pairs or both with the worker's own scoring.
    """
    from ... import app as worker_app
    from .command import EvalRequest, check_lengths, run_eval
    from .console import consoles
    from .errors import EvalError
    from .evaluation import Targets

    settings = tool_settings(config, model, policies)
    targets = Targets(target_precision, target_recall, review_budget)
    request = EvalRequest(dataset, policy, contrastive, compare, out, targets)
    try:
        code = asyncio.run(
            run_eval(settings, request, worker_app.start_classifier, *consoles(), check_lengths)
        )
    except EvalError as exc:
        die(str(exc))
    except WorkerError as exc:
        die(str(exc), code=exc.exit_code)
    raise typer.Exit(code)


@eval_app.command("shadow")
def shadow_command(
    source: Annotated[
        str,
        typer.Argument(
            help="Shadow records: a JSONL file, or kafka:TOPIC to read the shadow topic "
            "(kafka.* settings).",
            show_default=False,
        ),
    ],
    out: OutOpt = REPORT,
    config: ConfigOpt = None,
) -> None:
    """Decisions each shadow policy would change, with examples of each flip.

    Reads the shadow records the worker wrote; no engine is started.
    """
    from .shadow import compare_to_files

    settings = tool_settings(config, None, None)
    try:
        typer.echo(compare_to_files(settings.kafka, source, out), nl=False)
    except WorkerError as exc:
        die(str(exc), code=exc.exit_code)


@eval_app.command("decisions")
def decisions_command(
    source: Annotated[
        str,
        typer.Argument(help="Reviewers' decisions: a JSONL file or a topic.", show_default=False),
    ],
    verdicts: Annotated[
        str | None,
        typer.Option(help="Review records the decisions answer (file or topic; default: review)."),
    ] = None,
    out: OutOpt = REPORT,
    target_precision: PrecisionOpt = None,
    target_recall: RecallOpt = None,
    review_budget: BudgetOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Precision and recall of automatic decisions, from reviewers' decisions.

    Joins the decisions (SOURCE) with the review records they answer; no engine is started.
    """
    from .console import consoles
    from .errors import EvalError
    from .evaluation import Targets
    from .feedback_command import FeedbackRequest, run_feedback

    settings = tool_settings(config, None, None)
    targets = Targets(target_precision, target_recall, review_budget)
    request = FeedbackRequest(source, verdicts, out, targets)
    try:
        code = asyncio.run(run_feedback(settings, request, consoles()[0]))
    except EvalError as exc:
        die(str(exc))
    except WorkerError as exc:
        die(str(exc), code=exc.exit_code)
    raise typer.Exit(code)
