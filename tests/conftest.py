"""Shared fixtures: one broker, one test model and one engine per test session; the seeing
test model once a session, and its engine once per module that uses it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.config import LocalEngineSettings
from worker.tools.broker import EmbeddedBroker

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / ".cache" / "test-model"
SEEING_MODEL_DIR = REPO / ".cache" / "test-model-seeing"
# Images per prompt the seeing engine takes: as many as the media tests sample from a video
# (their media.max_frames).
SEEING_IMAGES = 4

# The CPU engine sizes its KV cache from this (GiB); the tiny model needs very little.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="session")
def broker():
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture(scope="session")
def test_model() -> Path:
    from worker.testing.devmodel import build_test_model

    return build_test_model(MODEL_DIR)


@pytest.fixture(scope="session")
def tokenizer(test_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(test_model))


# On the CPU, eager mode starts in half the time and runs the tiny model faster; a block of
# 32 tokens (the CPU attention's smallest) lets short test policies fill cacheable blocks.
CPU_ENGINE_ARGS = {"enforce_eager": True, "block_size": 32}


def engine_settings(model: Path, **overrides) -> LocalEngineSettings:
    return LocalEngineSettings(
        model=str(model), max_model_len=4096, seed=0, extra_args=CPU_ENGINE_ARGS, **overrides
    )


@pytest.fixture(scope="session")
async def engine(test_model):
    from worker.engine.vllm import VllmClassifier

    classifier = await VllmClassifier.start(engine_settings(test_model))
    yield classifier
    classifier.close()


@pytest.fixture(scope="session")
def seeing_model() -> Path:
    from worker.testing.seeing import build_seeing_model

    return build_seeing_model(SEEING_MODEL_DIR)


@pytest.fixture(scope="module")
async def seeing_engine(seeing_model):
    from worker.engine.vllm import VllmClassifier

    settings = engine_settings(seeing_model)
    settings.extra_args = {**CPU_ENGINE_ARGS, "limit_mm_per_prompt": {"image": SEEING_IMAGES}}
    classifier = await VllmClassifier.start(settings)
    yield classifier
    classifier.close()
