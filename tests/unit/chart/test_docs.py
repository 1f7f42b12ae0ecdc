"""Every documented chart example renders and validates with the chart as it is.

Sources: the YAML blocks of docs/*.md and README.md (each a values file, unless its first
line says it is the worker's ``config.yaml``, which is then loaded by the worker), the
``helm`` commands of their shell blocks (``-f`` naming a documented values file, ``--set``,
``--set-file``), the ``--set`` flags quoted in their prose, and the values snippet ``eval``
writes. (examples/ holds evaluation data, no chart values.)
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from worker.config import load_settings
from worker.hashbanks.files import BankConfig
from worker.packs import scan_pack
from worker.tools.evaluate.thresholds import Band, BandOutcome, Suggestion, helm_values

from .support import (
    ROOT,
    load_rendered_config,
    merged,
    render,
    validate_manifests,
)

DOCS = sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md"])
FENCE = re.compile(r"^([ \t]*)```(\w*)\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
PROSE_SET = re.compile(r"`--set(?:-string)? ([^`\s]+)`")


def blocks(language: str) -> Iterator[tuple[str, str]]:
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            indent, fence_language, body = match.groups()
            if fence_language in language.split("|"):
                line = text.count("\n", 0, match.start()) + 1
                body = "".join(row.removeprefix(indent) for row in body.splitlines(True))
                yield f"{doc.relative_to(ROOT)}:{line}", body


def values_files() -> dict[str, dict[str, Any]]:
    """Documented values files by the name their first line gives (``# values-x.yaml``)."""
    named = {}
    for _, body in blocks("yaml|yml"):
        first = body.splitlines()[0]
        if re.fullmatch(r"# (values[\w.-]*\.yaml)", first):
            named[first[2:]] = yaml.safe_load(body)
    return named


def helm_commands() -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, values) of each documented helm install/upgrade that sets values."""
    files = values_files()
    for where, body in blocks("bash|sh|shell|console"):
        for command in body.replace("\\\n", " ").splitlines():
            if not command.startswith(("helm ", "--set")):
                continue  # a flag alone is a fragment of a documented helm command
            words = shlex.split(command, comments=True)
            if words[0] == "helm" and not {"install", "upgrade"} & set(words):
                continue
            values: dict[str, Any] = {}
            for flag, arg in zip(words, words[1:], strict=False):
                if flag in ("-f", "--values"):
                    values = merged(values, files[arg])
                elif flag == "--set":
                    values = merged(values, helm.parse_set_string(arg))
                elif flag == "--set-file":
                    values = merged(values, _set_file(arg))
            yield f"{where}: {command.strip()[:60]}", values


def _set_file(arg: str) -> dict[str, Any]:
    key, _, path = arg.partition("=")
    source = ROOT / path
    text = source.read_text(encoding="utf-8") if source.exists() else "A policy of the docs.\n"
    parts = re.split(r"(?<!\\)\.", key)
    out: dict[str, Any] = {}
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part.replace("\\.", "."), {})
    node[parts[-1].replace("\\.", ".")] = text
    return out


def yaml_examples() -> Iterator[tuple[str, str]]:
    yield from blocks("yaml|yml")


def prose_sets() -> Iterator[tuple[str, str]]:
    for doc in DOCS:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for expression in PROSE_SET.findall(line):
                yield f"{doc.relative_to(ROOT)}:{number}", expression


def check_renders(chart: helm.Chart, values: dict[str, Any], tmp_path: Path) -> None:
    rendered = render(chart, values)
    validate_manifests(rendered)
    load_rendered_config(rendered, tmp_path)


def check_manifest(manifest: dict[str, Any], pack: Path) -> None:
    """The documented manifest, with the files it names, is read as a pack."""
    (pack / "pack.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    for entry in manifest["policies"]:
        path = pack / (entry["file"] if isinstance(entry, dict) else entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("Flag content that names a fruit.\n", encoding="utf-8")
    assert len(scan_pack(pack)) == len(manifest["policies"])


def test_the_docs_hold_the_examples_this_module_checks() -> None:
    assert {"values-prod.yaml", "values-remote.yaml"} <= set(values_files())
    assert len(list(helm_commands())) >= 5 and len(list(prose_sets())) >= 3


@pytest.mark.parametrize("where, body", list(yaml_examples()), ids=lambda v: str(v)[:60])
def test_documented_yaml_renders_or_loads(
    chart: helm.Chart, where: str, body: str, tmp_path: Path
) -> None:
    if body.startswith("# config.yaml"):
        config = tmp_path / "config.yaml"
        config.write_text(body, encoding="utf-8")
        load_settings(config_file=config)
        return
    if body.startswith("# pack.yaml"):  # a policy pack's manifest (docs/policy-packs.md)
        check_manifest(yaml.safe_load(body), tmp_path)
        return
    if body.startswith("# banks/"):  # a hash bank's YAML (docs/hash-banks.md)
        BankConfig.model_validate(yaml.safe_load(body))
        return
    check_renders(chart, yaml.safe_load(body), tmp_path)


@pytest.mark.parametrize("where, values", list(helm_commands()), ids=lambda v: str(v)[:60])
def test_documented_helm_commands_render(
    chart: helm.Chart, where: str, values: dict[str, Any], tmp_path: Path
) -> None:
    check_renders(chart, values, tmp_path)


@pytest.mark.parametrize("where, expression", list(prose_sets()), ids=lambda v: str(v)[:60])
def test_set_flags_quoted_in_the_docs_render(
    chart: helm.Chart, where: str, expression: str, tmp_path: Path
) -> None:
    expression = expression.replace("sha256:<digest>", "sha256:" + "0" * 64)
    check_renders(chart, helm.parse_set_string(expression), tmp_path)


def test_the_values_snippet_eval_writes_renders(chart: helm.Chart, tmp_path: Path) -> None:
    band = Band(threshold=0.62, review_low=0.18, review_high=0.9)
    suggestion = Suggestion("precision", 0.95, band, BandOutcome(1, 1, 1, 1, 1, 1))
    snippet = helm_values("precision", 0.95, {"hate-speech": suggestion, "violence": None})
    rendered = render(chart, yaml.safe_load(snippet))
    settings = load_rendered_config(rendered, tmp_path)
    assert settings.routing.policies["hate-speech"].review_low == 0.18
