"""The package's floors: every import runs down or across a floor, never up; no import
closes a cycle (imports inside functions included, so none can hide one); code outside the
engine package reaches it only through its public modules; the pipeline's parts import only
the parts before them, so the record's path reads in one direction."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

import worker

ROOT = Path(worker.__file__).parent

# Lowest first: a module may import its own floor and the floors below it.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "worker",
            "errors",
            "retry",
            "supervise",
            "subprocesses",
            "config",
            "testing",
        ),
    ),
    (
        "domain",
        (
            "events",
            "policies",
            "packs",
            "policy_lint",
            "model_files",
            "prompts",
            "prompt_check",
            "prefixes",
            "compile_process",
            "routing",
            "catalog",
            "audit",
            "decisions",
            "kafka",
            "hashbanks",
            "kv_footprint",
            "media",
        ),
    ),
    ("engine", ("engine",)),
    ("scoring", ("scoring",)),
    ("observability", ("observability",)),
    ("pipeline", ("pipeline",)),
    ("app", ("app", "preflight", "cli", "cli_common", "coop", "tools")),
]
ENGINE_PUBLIC = {
    "worker.engine",
    "worker.engine.factory",
    "worker.engine.tokenizer",
    "worker.engine.image_tokens",
}
# The record's path, intake to commit; offsets is the ledger intake opens and commits close.
PIPELINE_ORDER = [
    "offsets",
    "undecodable",
    "intake",
    "batching",
    "outcomes",
    "publish",
    "commits",
    "progress",
    "worker",
    "__init__",
]

Edge = tuple[str, str, int]  # importer, imported, line


def module_name(path: Path) -> str:
    parts = ["worker", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> list[Edge]:
    """Every import of a worker module in ``path``, at any depth of the code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from pkg import sub`` imports the submodule; ``from mod import name``, the module.
            targets = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = targets or [base]
        else:
            continue
        edges += [(name, t, node.lineno) for t in targets if t.split(".")[0] == "worker"]
    return edges


def all_edges() -> list[Edge]:
    found = modules()
    return [edge for name, path in found.items() for edge in imports(name, path, set(found))]


def floor_of(name: str) -> int:
    first = name.split(".")[1] if "." in name else "worker"
    for index, (_, members) in enumerate(FLOORS):
        if first in members:
            return index
    raise LookupError(f"{name} is on no floor: add it to FLOORS in {__file__}")


def upward(edges: list[Edge]) -> list[str]:
    return [
        f"{a}:{line} imports {b} ({FLOORS[floor_of(a)][0]} -> {FLOORS[floor_of(b)][0]})"
        for a, b, line in edges
        if floor_of(b) > floor_of(a)
    ]


def cycle(edges: list[Edge]) -> list[str] | None:
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges:
        graph.setdefault(a, set()).add(b)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def engine_internals(edges: list[Edge]) -> list[str]:
    return [
        f"{a}:{line} imports {b}"
        for a, b, line in edges
        if b.startswith("worker.engine.")
        and not a.startswith("worker.engine.")
        and a != "worker.engine"
        and b not in ENGINE_PUBLIC
    ]


def pipeline_backwards(edges: list[Edge]) -> list[str]:
    def stage(name: str) -> int:
        return PIPELINE_ORDER.index(name.removeprefix("worker.pipeline").lstrip(".") or "__init__")

    inside = [
        (a, b, line)
        for a, b, line in edges
        if a.startswith("worker.pipeline") and b.startswith("worker.pipeline")
    ]
    return [f"{a}:{line} imports {b}" for a, b, line in inside if stage(b) >= stage(a)]


def test_every_module_is_on_a_floor():
    for name in modules():
        floor_of(name)
    assert set(PIPELINE_ORDER) == {p.stem for p in (ROOT / "pipeline").glob("*.py")}


def test_no_import_runs_upward():
    assert upward(all_edges()) == []


def test_no_import_closes_a_cycle():
    assert cycle(all_edges()) is None


def test_outside_code_reaches_the_engine_through_its_public_modules():
    assert engine_internals(all_edges()) == []


def test_the_pipeline_reads_in_one_direction():
    assert pipeline_backwards(all_edges()) == []


def test_no_module_loads_its_names_lazily():
    # A module-level __getattr__ is how a package defers imports that would close a cycle.
    lazy = [
        name
        for name, path in modules().items()
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
    ]
    assert lazy == []


def test_the_checks_see_what_they_forbid():
    edges = [
        ("worker.events", "worker.scoring.classify", 3),
        ("worker.tools.demo", "worker.engine.vllm", 4),
        ("worker.pipeline.intake", "worker.pipeline.publish", 5),
        ("worker.scoring.a", "worker.scoring.b", 6),
        ("worker.scoring.b", "worker.scoring.a", 7),
    ]
    assert upward(edges) == ["worker.events:3 imports worker.scoring.classify (domain -> scoring)"]
    assert set(cycle(edges) or []) == {"worker.scoring.a", "worker.scoring.b"}
    assert engine_internals(edges) == ["worker.tools.demo:4 imports worker.engine.vllm"]
    assert pipeline_backwards(edges) == ["worker.pipeline.intake:5 imports worker.pipeline.publish"]
    with pytest.raises(LookupError, match="worker.newthing is on no floor"):
        floor_of("worker.newthing")


def test_imports_are_resolved_as_python_resolves_them(tmp_path: Path):
    source = tmp_path / "mod.py"
    source.write_text(
        "from . import shadow\nfrom ..engine import Score\nimport worker.kafka\n"
        "def f():\n    from .verdict_cache import make_cache\n"
    )
    known = {"worker.scoring.shadow", "worker.scoring.verdict_cache", "worker.engine"}
    assert imports("worker.scoring.mod", source, known) == [
        ("worker.scoring.mod", "worker.scoring.shadow", 1),
        ("worker.scoring.mod", "worker.engine", 2),
        ("worker.scoring.mod", "worker.kafka", 3),
        ("worker.scoring.mod", "worker.scoring.verdict_cache", 5),
    ]
