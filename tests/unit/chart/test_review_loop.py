"""Chart render tests for the review loop: audit rates, the decisions topic, the Coop adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from worker.config import load_settings

from .support import (
    FULLNAME,
    Rendered,
    render,
    render_error,
    validate_manifests,
)

ADAPTER = f"{FULLNAME}-coop-adapter"
COOP_VALUES: dict[str, Any] = {
    "config": {
        "kafka": {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                  "sasl_username": "moderation"},
        "topics": {"decisions": "review-decisions"},
        "routing": {"audit_label_1": 0.01, "audit_label_0": "0.005",
                    "policies": {"spam": {"audit_label_1": 0.2}}},
        "coop": {"url": "https://coop.example.org", "policies": {"spam": "coop-spam-policy"},
                 "decisions": {"act-remove": 1, "act-ok": 0}},
    },
    "credentials": {"kafkaSasl": {"existingSecret": "kafka-sasl"}},
    "policyPack": {"inline": {"spam.md": "---\nid: spam\ntitle: Spam\n---\nFlag spam.\n"}},
    "coopAdapter": {"enabled": True, "existingSecret": "coop-keys"},
}  # fmt: skip


@pytest.fixture(scope="module")
def rendered(chart: helm.Chart) -> Rendered:
    return render(chart, COOP_VALUES)


def _load(text: str, tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_settings(config_file=path)


def test_audit_rates_and_the_decisions_topic_reach_the_worker(rendered: Rendered, tmp_path):
    settings = _load(rendered.config_text, tmp_path)
    assert settings.routing.audit_label_1 == 0.01 and settings.routing.audit_label_0 == 0.005
    assert settings.routing.policies["spam"].audit_label_1 == 0.2
    assert settings.topics.decisions == "review-decisions"


def test_the_adapter_renders_valid_manifests_with_its_own_config(rendered: Rendered, tmp_path):
    validate_manifests(rendered)
    deployment = rendered.one("Deployment", ADAPTER)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["coop", "--config", "/etc/moderation-worker/config.yaml"]
    config = rendered.one("ConfigMap", ADAPTER)["data"]["config.yaml"]
    settings = _load(config, tmp_path)
    assert settings.coop.url == "https://coop.example.org"
    assert settings.coop.decisions == {"act-remove": 1, "act-ok": 0}
    assert settings.coop.coop_policy("spam") == "coop-spam-policy"
    assert (settings.coop.path, settings.coop.ignore_path) == ("/coop/actions", "/coop/ignore")
    assert str(settings.coop.public_key_file).startswith("/etc/moderation-worker/secrets/coop")
    assert settings.kafka.sasl_password_file is not None  # the worker's Kafka credentials
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert {"config", "coop", "kafka-sasl"} <= mounts
    keys = {v["name"]: v for v in pod["volumes"]}["coop"]["secret"]
    assert keys["secretName"] == "coop-keys"
    service = rendered.one("Service", ADAPTER)
    assert service["spec"]["ports"][0]["port"] == 8090


def test_the_adapter_pods_are_not_selected_by_the_worker(rendered: Rendered):
    worker = rendered.one("Deployment", FULLNAME)["spec"]["selector"]["matchLabels"]
    adapter = rendered.one("Deployment", ADAPTER)["spec"]["template"]["metadata"]["labels"]
    assert not all(adapter.get(k) == v for k, v in worker.items())


def test_the_adapter_is_off_by_default(chart: helm.Chart):
    assert not [d for d in render(chart).docs if d["metadata"]["name"] == ADAPTER]


def test_an_enabled_adapter_without_its_secret_is_refused(chart: helm.Chart):
    values = yaml.safe_load(yaml.safe_dump(COOP_VALUES))
    values["coopAdapter"]["existingSecret"] = ""
    assert "coopAdapter.existingSecret is required" in render_error(chart, values)


def test_the_worker_config_leaves_coop_to_the_adapter(rendered: Rendered, tmp_path):
    assert "coop" not in yaml.safe_load(rendered.config_text)
    assert _load(rendered.config_text, tmp_path).coop.url is None


@pytest.mark.parametrize(
    ("missing", "message"),
    [("url", "coop.url is required"), ("decisions", "coop.decisions is empty")],
)  # fmt: skip
def test_an_adapter_without_its_settings_is_refused_by_the_adapter(
    chart: helm.Chart, tmp_path, missing, message
):
    """The chart leaves the adapter's own rules to the adapter's start-up checks."""
    from worker.coop.command import AdapterError, check

    values = yaml.safe_load(yaml.safe_dump(COOP_VALUES))
    del values["config"]["coop"][missing]
    config = render(chart, values).one("ConfigMap", ADAPTER)["data"]["config.yaml"]
    with pytest.raises(AdapterError, match=message):
        check(_load(config, tmp_path))
