"""Fixtures of the chart tests: the loaded chart and its common renders."""

from __future__ import annotations

import os
from collections.abc import Iterator

import helm_python as helm
import pytest

from .support import CHART_DIR, DEV_SECRET_VALUES, FULL_VALUES, HPA_VALUES, Rendered, render


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    # Helm logs one INFO line per load: files/policies is a symlink to the repository's
    # policies/ directory, which it follows. That is intended.
    loaded = helm.Chart.load(CHART_DIR)
    yield loaded
    loaded.close()


@pytest.fixture(autouse=True)
def _no_worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered config must stand on its own: no WORKER_* from the test environment."""
    for name in list(os.environ):
        if name.startswith("WORKER_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def default(chart: helm.Chart) -> Rendered:
    return render(chart)


@pytest.fixture(scope="module")
def full(chart: helm.Chart) -> Rendered:
    return render(chart, FULL_VALUES)


@pytest.fixture(scope="module")
def dev(chart: helm.Chart) -> Rendered:
    return render(chart, DEV_SECRET_VALUES)


@pytest.fixture(scope="module")
def hpa(chart: helm.Chart) -> Rendered:
    return render(chart, HPA_VALUES)
