"""Start-up refuses a model whose chat template renders content otherwise than the worker.

The worker runs against the real broker with a real tokenizer (the test model's) whose
template rewrites content; the instant classifier stands in for vLLM, which plays no part in
this check (the tokenizer does), so the test needs no engine start.
"""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from worker.app import run_worker
from worker.engine.instant import InstantClassifier
from worker.prompts import PromptError

from .harness import topic_names, worker_settings

pytestmark = pytest.mark.integration


async def test_worker_refuses_to_start_on_a_template_that_changes_content(broker, test_model):
    tokenizer = AutoTokenizer.from_pretrained(str(test_model))
    # Collapses runs of spaces: content's leading spaces are not what the model was given.
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "| trim", "| trim | replace('  ', ' ')"
    )
    settings = worker_settings(broker.bootstrap_servers, test_model, topic_names("template"))

    async def classifier(_settings):
        return InstantClassifier(tokenizer)

    with pytest.raises(PromptError) as info:
        await run_worker(settings, classifier)
    message = str(info.value)
    assert isinstance(info.value, ValueError)  # what `moderation-worker run` reports in one line
    assert message.startswith(f"model {str(test_model)!r}: its chat template renders content")
    assert "\n" not in message
