"""Writing the report directory: Markdown, self-contained HTML, SVG charts and JSON data.

``report.md`` links the SVG files next to it; ``report.html`` carries the same charts
inline, so it can be mailed or attached to a ticket on its own; ``report.json`` holds every
figure and per-item score for scripts and CI gates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

import orjson

from .document import Block, Chart, Code, Heading, Para, Table, build
from .evaluation import Evaluation

STYLE = """
body { font-family: sans-serif; max-width: 980px; margin: 2em auto; color: #1f2933; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #c5ccd3; padding: 0.25em 0.6em; text-align: left; }
th { background: #eef2f5; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; }
pre { background: #f4f6f8; padding: 0.8em; overflow-x: auto; }
"""


def write_report(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """Write every report file into ``out_dir`` (created if missing); return their paths."""
    return write_blocks(build(evaluation), to_data(evaluation), out_dir)


def write_blocks(blocks: list[Block], data: Any, out_dir: Path) -> list[Path]:
    """Write a document's renderings and its figures as JSON (``data``) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for block in blocks:
        if isinstance(block, Chart):
            written.append(_write(out_dir / block.name, block.svg))
    written.append(_write(out_dir / "report.md", to_markdown(blocks)))
    written.append(_write(out_dir / "report.html", to_html(blocks)))
    text = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    written.append(_write(out_dir / "report.json", text.decode()))
    return written


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def to_markdown(blocks: list[Block]) -> str:
    return "\n\n".join(_MARKDOWN[type(block)](block) for block in blocks) + "\n"


def _markdown_table(table: Table) -> str:
    def cells(values: list[str]) -> str:
        return "| " + " | ".join(_md_cell(v) for v in values) + " |"

    lines = [cells(table.columns), "|" + "---|" * len(table.columns)]
    lines += [cells(row) for row in table.rows]
    return "\n".join(lines)


def _md_cell(value: str) -> str:
    return " ".join(value.split()).replace("\\", "\\\\").replace("|", "\\|")


def to_html(blocks: list[Block]) -> str:
    body = "\n".join(_HTML[type(block)](block) for block in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Policy evaluation</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + body
        + "\n</body>\n</html>\n"
    )


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>" for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


# How each kind of block is written, per format.
_MARKDOWN: dict[type, Callable[[Any], str]] = {
    Heading: lambda block: f"{'#' * block.level} {block.text}",
    Para: lambda block: block.text,
    Table: lambda block: _markdown_table(block),
    Chart: lambda block: f"![{block.title}]({block.name})",
    Code: lambda block: f"```{block.language}\n{block.text.rstrip()}\n```",
}
_HTML: dict[type, Callable[[Any], str]] = {
    Heading: lambda block: f"<h{block.level}>{escape(block.text)}</h{block.level}>",
    Para: lambda block: f"<p>{escape(block.text)}</p>",
    Table: lambda block: _html_table(block),
    Chart: lambda block: f"<figure>{block.svg}</figure>",
    Code: lambda block: f"<pre><code>{escape(block.text)}</code></pre>",
}


def to_data(value: Any) -> Any:
    """Plain data for JSON: dataclass fields plus their computed properties (precision...)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name, member in vars(type(value)).items():
            if isinstance(member, property):
                data[name] = to_data(getattr(value, name))
        return data
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    return value
