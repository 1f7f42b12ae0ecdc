"""Credentials, monitoring, autoscaling and the model cache in the rendered chart."""

from __future__ import annotations

import re
from pathlib import Path

import helm_python as helm

from .support import (
    DEV_SECRET_VALUES,
    FULL_VALUES,
    FULLNAME,
    NAMESPACE,
    Rendered,
    load_rendered_config,
    merged,
    render,
    validate_manifests,
)

# ---------------------------------------------------------------------------------------
# Credentials


def test_sasl_and_tls_from_existing_secrets(full: Rendered, tmp_path: Path) -> None:
    settings = load_rendered_config(full, tmp_path)
    sasl = full.volume("kafka-sasl")["secret"]
    assert sasl["secretName"] == "kafka-sasl"
    assert sasl["items"] == [{"key": "sasl-password", "path": "password"}]
    sasl_dir = full.mount("kafka-sasl")["mountPath"]
    assert settings.kafka.sasl_password_file == Path(sasl_dir) / "password"

    tls = full.volume("kafka-tls")["secret"]
    assert tls["secretName"] == "kafka-tls"
    tls_dir = Path(full.mount("kafka-tls")["mountPath"])
    items = {i["key"]: tls_dir / i["path"] for i in tls["items"]}
    assert items == {
        "ca.crt": settings.kafka.ssl_cafile,
        "tls.crt": settings.kafka.ssl_certfile,
        "tls.key": settings.kafka.ssl_keyfile,
    }
    for name in ("kafka-sasl", "kafka-tls"):
        assert full.mount(name)["readOnly"] is True
        assert full.volume(name)["secret"]["defaultMode"] == 0o440


def test_tls_with_ca_only(chart: helm.Chart, tmp_path: Path) -> None:
    rendered = render(
        chart,
        {
            "config": {"kafka": {"security_protocol": "SSL"}},
            "credentials": {"kafkaTls": {"existingSecret": "ca-only", "certKey": "", "keyKey": ""}},
        },
    )
    validate_manifests(rendered)
    settings = load_rendered_config(rendered, tmp_path)
    assert settings.kafka.ssl_cafile is not None
    assert settings.kafka.ssl_certfile is None and settings.kafka.ssl_keyfile is None
    assert rendered.volume("kafka-tls")["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]


def test_tls_against_system_cas_needs_no_secret(chart: helm.Chart, tmp_path: Path) -> None:
    rendered = render(chart, {"config": {"kafka": {"security_protocol": "SSL"}}})
    assert "kafka-tls" not in {v["name"] for v in rendered.pod["volumes"]}
    assert load_rendered_config(rendered, tmp_path).kafka.ssl_cafile is None


def test_hf_token_from_secret(full: Rendered, dev: Rendered, default: Rendered) -> None:
    assert full.env()["HF_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}
    }
    assert dev.env()["HF_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": f"{FULLNAME}-hf-token", "key": "token"}
    }
    assert "HF_TOKEN" not in default.env()


def test_dev_secrets_are_mounted_where_the_config_points(dev: Rendered, tmp_path: Path) -> None:
    settings = load_rendered_config(dev, tmp_path)
    assert dev.volume("kafka-sasl")["secret"]["secretName"] == f"{FULLNAME}-kafka-sasl"
    assert dev.volume("kafka-tls")["secret"]["secretName"] == f"{FULLNAME}-kafka-tls"
    assert (
        settings.kafka.sasl_password_file == Path(dev.mount("kafka-sasl")["mountPath"]) / "password"
    )
    assert settings.kafka.ssl_keyfile == Path(dev.mount("kafka-tls")["mountPath"]) / "tls.key"


def test_secret_change_rolls_pods_but_secret_stays_out_of_config(chart: helm.Chart) -> None:
    one = render(chart, DEV_SECRET_VALUES)
    two = render(
        chart, merged(DEV_SECRET_VALUES, {"credentials": {"kafkaSasl": {"password": "rotated"}}})
    )

    def secrets_checksum(rendered: Rendered) -> str:
        return rendered.deployment["spec"]["template"]["metadata"]["annotations"][
            "checksum/secrets"
        ]

    assert secrets_checksum(one) != secrets_checksum(two)
    assert one.checksum == two.checksum
    assert "dev-password" not in one.config_text


# ---------------------------------------------------------------------------------------
# Monitoring and autoscaling (custom resources: checked field by field)


def test_service_and_service_monitor_point_at_metrics(full: Rendered) -> None:
    service = full.one("Service")
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http-metrics" and port["targetPort"] == "http"
    assert service["spec"]["selector"] == full.deployment["spec"]["selector"]["matchLabels"]

    monitor = full.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] == port["name"]
    assert endpoint["path"] == "/metrics"
    assert re.fullmatch(r"\d+(ms|s|m|h)", endpoint["interval"])


def test_keda_scales_the_deployment_on_consumer_lag(full: Rendered) -> None:
    scaled = full.one("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": full.deployment["metadata"]["name"],
    }
    assert spec["minReplicaCount"] == 1 and spec["maxReplicaCount"] == 12
    assert isinstance(spec["pollingInterval"], int) and isinstance(spec["cooldownPeriod"], int)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata are strings"
    assert meta["bootstrapServers"] == FULL_VALUES["config"]["kafka"]["bootstrap_servers"]
    assert meta["consumerGroup"] == "moderation-prod"
    assert meta["topic"] == "ugc-content"
    assert int(meta["lagThreshold"]) >= 1
    assert meta["offsetResetPolicy"] == "earliest"
    assert meta["sasl"] == "scram_sha512" and meta["tls"] == "enable"
    assert "replicas" not in full.deployment["spec"], "KEDA owns the replica count"

    auth = full.one("TriggerAuthentication")
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "password": ("kafka-sasl", "sasl-password"),
        "ca": ("kafka-tls", "ca.crt"),
        "cert": ("kafka-tls", "tls.crt"),
        "key": ("kafka-tls", "tls.key"),
    }
    (username,) = auth["spec"]["env"]
    assert username["parameter"] == "username"
    assert username["containerName"] == full.container["name"]
    assert full.env()[username["name"]]["value"] == "moderation"


def test_keda_without_kafka_auth_needs_no_trigger_authentication(chart: helm.Chart) -> None:
    rendered = render(chart, {"autoscaling": {"keda": {"enabled": True}}})
    validate_manifests(rendered)
    assert not rendered.all("TriggerAuthentication")
    (trigger,) = rendered.one("ScaledObject")["spec"]["triggers"]
    assert "authenticationRef" not in trigger
    assert "sasl" not in trigger["metadata"] and "tls" not in trigger["metadata"]


def test_model_cache_pvc(full: Rendered, chart: helm.Chart) -> None:
    pvc = full.one("PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["storageClassName"] == "fast-rwx"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "300Gi"
    assert (
        full.volume("model-cache")["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    )

    existing = render(
        chart,
        {
            "modelCache": {
                "type": "persistentVolumeClaim",
                "persistentVolumeClaim": {"existingClaim": "models"},
            }
        },
    )
    assert not existing.all("PersistentVolumeClaim")
    assert existing.volume("model-cache")["persistentVolumeClaim"]["claimName"] == "models"
