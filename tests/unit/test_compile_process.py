"""A reload's compile: few changes in the calling thread, many in a child process.

The child's halves must be the ones the thread compiles; a child whose tokenizer is not the
caller's is not trusted (the thread compiles); a child that dies fails the reload with one
line saying so; a policy the child cannot compile raises its own error in the caller.
"""

from __future__ import annotations

import io
import json
import shutil
import sys

import pytest

from tests.unit.test_prefixes import POLICIES, policy
from worker import compile_process
from worker.catalog import compile_catalog
from worker.compile_process import (
    CompileProcessError,
    _exchange,
    compile_changed,
    packed,
    receive,
    send,
)
from worker.config import RoutingSettings
from worker.policies import PolicyRegistry
from worker.prefixes import Halves, compile_halves, fingerprint
from worker.prompts import PromptError


@pytest.fixture
def apart(monkeypatch):
    """Children started, by their first policies' ids; from two changed policies on."""
    monkeypatch.setattr(compile_process, "APART_AT", 2)
    started: list[list[str]] = []
    real = compile_process.compile_apart

    def recording(tokenizer, source, policies):
        started.append([p.id for p in policies])
        return real(tokenizer, source, policies)

    monkeypatch.setattr(compile_process, "compile_apart", recording)
    return started


def test_halves_travel_as_arrays_and_come_back_equal():
    halves = _halves()
    suffixes, items = packed(halves)
    stream = io.BytesIO()
    send(stream, ("halves", suffixes, items))
    stream.seek(0)
    kind, tails, back = receive(stream)
    assert kind == "halves" and len(tails) == 1  # one template tail for every policy
    assert all(isinstance(prefix, bytes) for _, prefix, _ in back)
    assert len(back) == len(halves)


def _halves() -> dict[str, Halves]:
    return {"v1": Halves((1, 70000, 3), (9, 8)), "v2": Halves((4,), (9, 8))}


def test_a_stream_that_ends_mid_message_is_an_eof():
    stream = io.BytesIO()
    send(stream, ("done",))
    with pytest.raises(EOFError):
        receive(io.BytesIO(stream.getvalue()[:-1]))


def test_many_changes_compile_in_a_child_and_equal_the_threads_halves(tokenizer, apart):
    halves = compile_changed(tokenizer, POLICIES, {})
    assert apart == [[p.id for p in POLICIES]]
    assert halves == compile_halves(tokenizer, POLICIES, alone=True)


def test_a_few_changes_compile_in_the_calling_thread(tokenizer, apart):
    known = compile_halves(tokenizer, POLICIES[1:])
    halves = compile_changed(tokenizer, POLICIES, known)
    assert apart == [] and halves == compile_halves(tokenizer, POLICIES)


def test_a_reload_with_many_changes_gives_the_catalog_a_full_compile_gives(tokenizer, apart):
    routing = RoutingSettings()
    before = compile_catalog(PolicyRegistry(POLICIES), tokenizer, 4096, routing)
    assert apart == []  # start-up compiles in its own thread, over every core
    edited = PolicyRegistry([policy(n, " Edited.") for n in range(len(POLICIES))])
    after = compile_catalog(edited, tokenizer, 4096, routing, previous=before)
    assert len(apart) == 1 and after == compile_catalog(edited, tokenizer, 4096, routing)


def test_a_child_whose_tokenizer_differs_is_not_trusted(tokenizer, apart, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tokenizer.name_or_path, other)
    config = json.loads((other / "tokenizer_config.json").read_text())
    config["chat_template"] = "{{ messages[0]['content'] }}"
    (other / "tokenizer_config.json").write_text(json.dumps(config))
    assert compile_process.compile_apart(tokenizer, str(other), POLICIES[:2]) is None


def test_a_child_that_dies_fails_the_compile_naming_its_exit(tokenizer, monkeypatch):
    monkeypatch.setattr(compile_process, "APART_AT", 2)
    dying = [sys.executable, "-c", "import sys; sys.stderr.write('out of memory'); sys.exit(3)"]
    monkeypatch.setattr(compile_process, "bound_to_parent", lambda command: dying)
    with pytest.raises(CompileProcessError) as info:
        compile_changed(tokenizer, POLICIES, {})
    message = str(info.value)
    assert "policy compile process" in message and "exit code 3: out of memory" in message
    assert "\n" not in message


class _Child:
    """What ``_exchange`` reads of a child: its pipes."""

    def __init__(self, replies: list[object]) -> None:
        self.stdin = io.BytesIO()
        self.stdout = io.BytesIO()
        for reply in replies:
            send(self.stdout, reply)
        self.stdout.seek(0)


def test_a_policy_the_child_cannot_compile_raises_its_error_in_the_caller(tokenizer):
    child = _Child([("fingerprint", fingerprint(tokenizer)), ("error", "template", "refused")])
    with pytest.raises(PromptError) as info:
        _exchange(child, tokenizer, "here", POLICIES[:1])  # type: ignore[arg-type]
    assert info.value.kind == "template" and info.value.reason == "refused"
