"""The Helm chart's values schema: its ``config`` block generated from the Settings model.

The chart passes ``config`` through to the worker's config.yaml as it is, so the schema of
that block is the Settings model's own JSON schema, adapted for Helm in three ways:

- secret fields are left out: the block lands in a ConfigMap, and the chart's
  ``credentials`` mount secrets as files instead;
- numbers also accept decimal strings, because ``helm --set x=0.3`` passes the string "0.3"
  (the worker parses it); the string's pattern keeps the range where it is one of 0..1,
  > 0, >= 0, and otherwise only the sign;
- titles are dropped (the descriptions stay).

The chart's own keys (image, resources, probes, ...) are written by hand in the same file;
this module replaces only ``properties.config`` and the policy file-name rule of
``policyPack.inline``, which it also exports (``policy_file_name_problem``) so that tools
checking a pack apply the very rule the chart does.

Regenerate after any change to the settings: ``python -m worker.tools.chart_schema``;
``--check`` exits 1 when the committed file differs from a fresh generation.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from ..config import Settings

CHART_DIR = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "moderation-worker"
SCHEMA_PATH = CHART_DIR / "values.schema.json"
COMMAND = "python -m worker.tools.chart_schema"

# A policy file the chart mounts is one file in one directory: 1-255 characters, no "/",
# no control characters, and no leading "." (hidden files are never policies, and
# Kubernetes keeps its own "..data" entries in a ConfigMap mount). Spaces and any other
# character are fine: the chart maps names that are not valid ConfigMap keys to keys that
# are, and mounts each file under its own name.
POLICY_FILE_NAME_PATTERN = r"^[^./\x00-\x1f\x7f][^/\x00-\x1f\x7f]{0,254}$"

_DECIMAL = r"([0-9]+\.?[0-9]*|\.[0-9]+)"
# (lower bound, exclusive?, upper bound) -> a pattern for decimal strings in that range.
_RANGE_PATTERNS = {
    (0, False, 1): r"^(0*\.[0-9]+|0+(\.[0-9]*)?|0*1(\.0*)?)$",
    (0, True, 1): r"^(0*\.[0-9]*[1-9][0-9]*|0*1(\.0*)?)$",
    (0, True, None): r"^(0*[1-9][0-9]*\.?[0-9]*|0*\.[0-9]*[1-9][0-9]*)$",
    (0, False, None): f"^{_DECIMAL}$",
}
_ANNOTATIONS = ("description", "default", "examples", "deprecated")


def policy_file_name_problem(name: str) -> str | None:
    """Why the chart cannot mount a policy file of this name, or None when it can."""
    if re.fullmatch(POLICY_FILE_NAME_PATTERN, name):
        return None
    if not name or len(name) > 255:
        return f"{name[:40]!r}: a file name has 1 to 255 characters"
    if name.startswith("."):
        return f"{name!r}: starts with '.' (hidden files are never policies)"
    return f"{name!r}: a file name may hold neither '/' nor control characters"


def config_schema() -> dict[str, Any]:
    """The schema of the chart's ``config`` block, refs pointing inside the block."""
    schema = Settings.model_json_schema(mode="validation")
    schema = _adapt(schema)
    schema["description"] = (
        "Worker settings (worker/config/), written to the worker's config.yaml as they "
        f"are. Generated from the Settings model by `{COMMAND}`: do not edit by hand."
    )
    return _repoint(schema, "#/$defs/", "#/properties/config/$defs/")


def render(current: dict[str, Any]) -> dict[str, Any]:
    """The chart's schema with the generated parts replaced; everything else kept."""
    schema = dict(current)
    properties = {"config": config_schema()}
    properties.update((k, v) for k, v in current.get("properties", {}).items() if k != "config")
    schema["properties"] = properties
    inline = properties["policyPack"]["properties"]["inline"]
    inline["propertyNames"] = {"pattern": POLICY_FILE_NAME_PATTERN}
    return schema


def schema_text(current_text: str) -> str:
    return json.dumps(render(json.loads(current_text)), indent=2, ensure_ascii=False) + "\n"


def _adapt(node: Any) -> Any:
    """A schema node with secrets dropped, numbers widened to decimal strings, no titles."""
    if isinstance(node, list):
        return [_adapt(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {k: v for k, v in node.items() if k != "title"}
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            node[key] = _flatten(key, _adapt(node[key]))
    for key in ("additionalProperties", "items"):
        if isinstance(node.get(key), dict):
            node[key] = _adapt(node[key])
    for key in ("properties", "$defs"):
        if key in node:
            node[key] = {
                name: _adapt(sub) for name, sub in node[key].items() if not _is_secret(sub)
            }
    return _number_or_decimal_string(node) if node.get("type") == "number" else node


def _number_or_decimal_string(node: dict[str, Any]) -> dict[str, Any]:
    number = {k: v for k, v in node.items() if k not in _ANNOTATIONS}
    low = node.get("exclusiveMinimum", node.get("minimum"))
    key = (low, "exclusiveMinimum" in node, node.get("maximum"))
    if key not in _RANGE_PATTERNS:  # only the sign can be kept
        key = (0, False, None) if low is not None and low >= 0 else None
    pattern = _RANGE_PATTERNS[key] if key else f"^-?{_DECIMAL}$"
    annotations = {k: v for k, v in node.items() if k in _ANNOTATIONS}
    return {"anyOf": [number, {"type": "string", "pattern": pattern}], **annotations}


def _flatten(key: str, branches: list[Any]) -> list[Any]:
    out: list[Any] = []
    for branch in branches:
        if isinstance(branch, dict) and set(branch) == {key}:
            out.extend(branch[key])
        else:
            out.append(branch)
    return out


def _is_secret(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    return bool(node.get("writeOnly")) or any(_is_secret(b) for b in node.get("anyOf", []))


def _repoint(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {k: _repoint(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_repoint(v, old, new) for v in node]
    if isinstance(node, str) and node.startswith(old):
        return new + node[len(old) :]
    return node


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", type=Path, default=SCHEMA_PATH, help="values.schema.json")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when the file is stale; write nothing"
    )
    args = parser.parse_args(argv)
    current = args.schema.read_text(encoding="utf-8")
    fresh = schema_text(current)
    if args.check:
        if fresh != current:
            sys.stderr.write(f"{args.schema} is stale: run {COMMAND}\n")
            return 1
        return 0
    args.schema.write_text(fresh, encoding="utf-8")
    sys.stdout.write(f"wrote {args.schema}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
