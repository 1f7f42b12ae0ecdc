"""Chart render tests for remote-engine pods: no GPU, no GPU nodes, no model download.

A remote-engine pod (config.engine.kind remote) only tokenizes and talks to a vLLM fleet:
it requests no GPU, carries none of the gpu.* tolerations, node labels or resources, runs
the CPU image, and its install notes say nothing of downloading a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from .support import (
    FULLNAME,
    Rendered,
    load_rendered_config,
    merged,
    render,
    render_error,
    validate_manifests,
)

REMOTE_VALUES: dict[str, Any] = {
    "config": {"engine": {"kind": "remote", "url": "http://vllm-router.vllm:80"}},
    "credentials": {"engineApiKey": {"existingSecret": "vllm-key", "key": "token"}},
}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
# A cluster's own scheduling rules: for every pod, and for GPU pods only.
SCHEDULING: dict[str, Any] = {
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "moderation"}],
    "nodeSelector": {"pool": "moderation"},
    "gpu": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
}


@pytest.fixture(scope="module")
def remote(chart: helm.Chart) -> Rendered:
    return render(chart, REMOTE_VALUES)


@pytest.fixture(scope="module")
def local(chart: helm.Chart) -> Rendered:
    return render(chart)


def test_remote_engine_pods_request_no_gpu(remote: Rendered, tmp_path: Path) -> None:
    validate_manifests(remote)
    resources = remote.container["resources"]
    assert not any("gpu" in name for part in resources.values() for name in part), resources
    assert remote.container["image"].endswith("-cpu")
    settings = load_rendered_config(remote, tmp_path)
    assert settings.engine.kind == "remote"
    assert settings.engine.urls() == ["http://vllm-router.vllm:80"]


def test_remote_engine_pods_skip_gpu_nodes(remote: Rendered, local: Rendered) -> None:
    assert GPU_TOLERATION in local.pod["tolerations"]
    assert "tolerations" not in remote.pod and "nodeSelector" not in remote.pod


def test_remote_engine_pods_get_cpu_sized_resources(remote: Rendered, local: Rendered) -> None:
    assert local.container["resources"]["requests"]["memory"] == "32Gi"
    assert remote.container["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "8Gi"},
    }


def test_cluster_scheduling_applies_to_both_kinds(chart: helm.Chart) -> None:
    remote = render(chart, merged(REMOTE_VALUES, SCHEDULING))
    local = render(chart, SCHEDULING)
    validate_manifests(remote)
    validate_manifests(local)
    assert remote.pod["tolerations"] == SCHEDULING["tolerations"]
    assert remote.pod["nodeSelector"] == {"pool": "moderation"}
    assert local.pod["tolerations"] == [*SCHEDULING["tolerations"], GPU_TOLERATION]
    assert local.pod["nodeSelector"] == {
        "pool": "moderation",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    }


def test_a_gpu_toleration_given_twice_is_listed_once(chart: helm.Chart) -> None:
    rendered = render(chart, {"tolerations": [GPU_TOLERATION]})
    assert rendered.pod["tolerations"] == [GPU_TOLERATION]


def test_explicit_resources_win_for_either_kind(chart: helm.Chart) -> None:
    mine = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    remote = render(chart, merged(REMOTE_VALUES, {"resources": mine}))
    assert remote.container["resources"] == mine
    local = render(chart, {"resources": mine})
    assert local.container["resources"]["limits"] == {"memory": "2Gi", "nvidia.com/gpu": 1}


def test_install_notes_of_a_remote_pod_mention_no_model_download(
    remote: Rendered, local: Rendered
) -> None:
    assert "Downloading and loading the model" in local.notes and "~52 GB" in local.notes
    for words in ("download", "52 GB", "GPU per pod", "x nvidia.com/gpu"):
        assert words not in remote.notes, words
    assert "http://vllm-router.vllm:80" in remote.notes and "request no GPU" in remote.notes


def test_a_local_engine_setting_on_a_remote_engine_is_refused_at_install(
    chart: helm.Chart,
) -> None:
    values = merged(
        REMOTE_VALUES, {"config": {"engine": {"tensor_parallel_size": 4}}, "gpu": {"count": 1}}
    )
    message = render_error(chart, values)
    assert "additional properties 'tensor_parallel_size' not allowed" in message


def test_a_remote_engine_without_url_is_refused_at_install(chart: helm.Chart) -> None:
    """The schema generated from the worker's settings knows that kind remote needs url."""
    message = render_error(chart, {"config": {"engine": {"kind": "remote"}}})
    assert "/config/engine" in message and "missing property 'url'" in message


def test_engine_api_key_from_a_secret_is_a_file_not_config(
    remote: Rendered, tmp_path: Path
) -> None:
    settings = load_rendered_config(remote, tmp_path)
    volume = remote.volume("engine-api-key")["secret"]
    assert volume["secretName"] == "vllm-key"
    assert volume["items"] == [{"key": "token", "path": "api-key"}]
    assert volume["defaultMode"] == 0o440 and remote.mount("engine-api-key")["readOnly"]
    mounted = Path(remote.mount("engine-api-key")["mountPath"]) / "api-key"
    assert settings.engine.api_key_file == mounted
    assert settings.engine.api_key is None and "api_key:" not in remote.config_text


def test_dev_engine_api_key_creates_a_secret_kept_out_of_config(chart: helm.Chart) -> None:
    values = merged(REMOTE_VALUES, {"credentials": {"engineApiKey": {"existingSecret": ""}}})
    values["credentials"]["engineApiKey"]["value"] = "s3cret-dev-key"
    rendered = render(chart, values)
    validate_manifests(rendered)
    secret = rendered.one("Secret", f"{FULLNAME}-engine-api-key")
    assert secret["data"] == {"api-key": "czNjcmV0LWRldi1rZXk="}
    assert rendered.volume("engine-api-key")["secret"]["items"] == [
        {"key": "api-key", "path": "api-key"}
    ]
    assert "s3cret-dev-key" not in rendered.config_text


def test_engine_api_key_twice_is_refused(chart: helm.Chart) -> None:
    values = merged(REMOTE_VALUES, {"config": {"engine": {"api_key_file": "/mnt/key"}}})
    assert "credentials.engineApiKey provides the key too" in render_error(chart, values)


def test_local_engine_pods_mount_no_engine_key(local: Rendered) -> None:
    assert "engine-api-key" not in {v["name"] for v in local.pod["volumes"]}
    assert local.container["image"].endswith("-gpu")
