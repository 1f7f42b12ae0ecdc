"""Where a model's files come from: names that can only be directories fail at once, and an
unreachable hub is found with one quick connection, not a minute of retries."""

from __future__ import annotations

import time

import pytest

from worker.model_files import (
    ModelFilesError,
    check_name,
    hub_unreachable,
    load_pretrained,
    looks_like_path,
)
from worker.tools.broker import free_port


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("zentropi-ai/cope-b-a4b", False),
        ("gpt2", False),
        ("/models/cope", True),
        ("./models/cope", True),
        ("~/models/cope", True),
        ("models/zentropi/cope", True),
    ],
)
def test_names_that_can_only_be_directories(name, path):
    assert looks_like_path(name) is path


def test_a_missing_directory_is_an_error_before_any_lookup(tmp_path):
    calls = []
    with pytest.raises(ModelFilesError, match="no such directory"):
        load_pretrained(lambda *a, **k: calls.append(a), str(tmp_path / "nope"))
    assert calls == []
    check_name("zentropi-ai/cope-b-a4b")  # a hub id is not checked here


def test_a_local_directory_is_read_without_the_hub(tmp_path):
    calls = []
    load_pretrained(lambda *a, **k: calls.append((a, k)), str(tmp_path))
    assert calls == [((str(tmp_path),), {"local_files_only": True})]


def test_an_unreachable_hub_is_one_error_after_the_cache_is_tried(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    tried = []

    def loader(name, **options):
        tried.append(options)
        raise OSError("not in the cache")

    start = time.monotonic()
    with pytest.raises(ModelFilesError, match="cannot be reached"):
        load_pretrained(loader, "owner/model")
    assert tried == [{"local_files_only": True}]  # the cache only, never the hub
    assert time.monotonic() - start < 5


def test_a_proxy_decides_for_itself(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:1")
    assert hub_unreachable() is None
