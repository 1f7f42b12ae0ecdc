"""The error vocabulary: the dead-letter kinds are the documented ones, and every kind of
error says by its type whether it is worth retrying."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.engine import EngineDead, EngineError, EngineStartError
from worker.engine.remote import Unavailable
from worker.errors import DeadLetterKind, FatalError, Rejected, TransientError, WorkerError
from worker.events import BadEvent
from worker.kafka import BrokersRefused, BrokersTrouble, BrokersUnreachable, KafkaSetupError
from worker.prompts import PromptError

README = Path(__file__).resolve().parents[2] / "README.md"


def _documented_kinds(text: str) -> set[str]:
    """The backticked names of every sentence of the README that lists error types."""
    prose = " ".join(text.split())
    sentences = re.findall(r"[Ee]rror types:? (.*?)\.(?:\s|$)", prose)
    assert len(sentences) >= 3, sentences  # the worker's, eval's and the Coop adapter's
    return {name for sentence in sentences for name in re.findall(r"`([a-z_]+)`", sentence)}


def test_the_readme_lists_exactly_the_dead_letter_kinds() -> None:
    assert _documented_kinds(README.read_text()) == {kind.value for kind in DeadLetterKind}


def test_a_kind_is_its_header_value() -> None:
    error = BadEvent(DeadLetterKind.INVALID_JSON, "value is not JSON")
    assert error.kind == "invalid_json" and f"{error.kind}" == "invalid_json"
    assert error.kind.encode() == b"invalid_json"


@pytest.mark.parametrize(
    ("kind", "base", "retriable"),
    [
        (TransientError, WorkerError, True),
        (FatalError, WorkerError, False),
        (Rejected, WorkerError, False),
        (BadEvent, Rejected, False),
        (PromptError, Rejected, False),
        (EngineError, TransientError, True),
        (Unavailable, TransientError, True),
        (EngineDead, FatalError, False),
        (EngineStartError, FatalError, False),
        (KafkaSetupError, FatalError, False),
        (BrokersUnreachable, KafkaSetupError, True),
        (BrokersTrouble, TransientError, True),
        (BrokersRefused, FatalError, False),
    ],
)
def test_one_tree_with_retriability_on_the_type(kind, base, retriable) -> None:
    assert issubclass(kind, base)
    assert kind.retriable is retriable
    assert "retriable" not in vars(kind) or kind in (TransientError, BrokersUnreachable)


async def test_a_tokenizer_that_cannot_load_fails_the_same_way_everywhere(tmp_path) -> None:
    from worker.config import load_settings
    from worker.engine.remote import RemoteClassifier
    from worker.engine.tokenizer import load_tokenizer
    from worker.preflight import compile_policies

    missing = str(tmp_path / "no-model")
    with pytest.raises(EngineStartError) as direct:
        load_tokenizer(missing)
    assert "engine.model" in str(direct.value)
    remote = load_settings(engine={"kind": "remote", "url": "http://127.0.0.1:9", "model": missing})
    with pytest.raises(EngineStartError) as at_start:  # before any server is asked
        await RemoteClassifier.start(remote.engine)
    with pytest.raises(EngineStartError) as preflight:
        compile_policies(remote)
    assert str(at_start.value) == str(preflight.value) == str(direct.value)
