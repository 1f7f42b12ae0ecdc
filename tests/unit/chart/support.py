"""Rendering the Helm chart in tests: the chart's values under test and helpers.

Charts are rendered through Helm's own engine (helm-python-sdk). Every rendered manifest
can be validated against the Kubernetes API schemas of KUBE_VERSION (kubernetes-validate,
strict: unknown fields fail); the custom resources (ServiceMonitor, ScaledObject,
TriggerAuthentication) have no schema there and are checked field by field by the tests.
The worker's config.yaml the chart renders is loaded through the worker's own loader.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate_utils

from worker.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[3]
CHART_DIR = ROOT / "deploy" / "helm" / "moderation-worker"
POLICY_DIR = ROOT / "policies"
KUBE_VERSION = "1.30"
RELEASE = "mw"
NAMESPACE = "moderation"
FULLNAME = f"{RELEASE}-moderation-worker"

CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}

SPAM_POLICY = """---
id: spam
title: Spam
---
# Spam

Flag unsolicited bulk advertising, link farms and repeated identical promotional posts.
"""

# Every optional part of the chart switched on, with credentials from existing Secrets.
FULL_VALUES: dict[str, Any] = {
    "config": {
        "kafka": {
            "bootstrap_servers": "b-1.kafka.example:9096,b-2.kafka.example:9096",
            "group_id": "moderation-prod",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "moderation",
        },
        "topics": {"content": "ugc-content", "create": True, "partitions": 12},
        "engine": {
            "quantization": "fp8",
            "max_num_seqs": 256,
            "max_model_len": 8192,
            "gpu_memory_utilization": 0.92,
            "extra_args": {"enforce_eager": True},
        },
        "routing": {"policies": {"spam": {"review_low": 0.3, "review_high": 0.9}}},
        "policies": {"default": ["spam"]},
        "log": {"level": "DEBUG"},
        "drain_deadline_s": 45,
    },
    "image": {
        "repository": "registry.example/moderation-worker",
        "digest": "sha256:" + "a" * 64,
    },
    "imagePullSecrets": [{"name": "regcred"}],
    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {
                            "matchLabels": {"app.kubernetes.io/name": "moderation-worker"}
                        },
                    },
                }
            ]
        }
    },
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "moderation-worker"}},
        }
    ],
    "priorityClassName": "gpu-high",
    "runtimeClassName": "nvidia",
    "podAnnotations": {"example.com/team": "trust-and-safety"},
    "podLabels": {"team": "trust-and-safety"},
    "serviceAccount": {"annotations": {"iam.example/role": "moderation"}},
    "policyPack": {"inline": {"spam.md": SPAM_POLICY}},
    "credentials": {
        "kafkaSasl": {"existingSecret": "kafka-sasl", "passwordKey": "sasl-password"},
        "kafkaTls": {"existingSecret": "kafka-tls"},
        "hfToken": {"existingSecret": "hf-token", "key": "HF_TOKEN"},
    },
    "modelCache": {
        "type": "persistentVolumeClaim",
        "persistentVolumeClaim": {"storageClassName": "fast-rwx", "size": "300Gi"},
    },
    "extraEnv": [{"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "1"}],
    "extraVolumes": [{"name": "extra", "emptyDir": {}}],
    "extraVolumeMounts": [{"name": "extra", "mountPath": "/extra"}],
    "service": {"annotations": {"example.com/scrape": "true"}},
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
    "autoscaling": {"keda": {"enabled": True, "minReplicaCount": 1, "maxReplicaCount": 12}},
}

# Development credentials given as values: the chart creates the Secrets.
DEV_SECRET_VALUES: dict[str, Any] = {
    "config": {
        "kafka": {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "dev",
        },
    },
    "credentials": {
        "kafkaSasl": {"password": "dev-password"},
        "kafkaTls": {
            "ca": "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
            "cert": "-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n",
            "key": "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n",
        },
        "hfToken": {"value": "hf_dev_token"},
    },
    "modelCache": {"type": "hostPath"},
    "autoscaling": {"keda": {"enabled": True}},
}

HPA_VALUES: dict[str, Any] = {"autoscaling": {"hpa": {"enabled": True, "maxReplicas": 4}}}


# ---------------------------------------------------------------------------------------
# Rendering helpers


class Rendered:
    """The manifests of one render, parsed, plus the raw text per template."""

    def __init__(self, raw: dict[str, str]) -> None:
        self.raw = raw
        self.docs: list[dict[str, Any]] = []
        for path, text in raw.items():
            if path.endswith("NOTES.txt"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.docs.append(doc)

    @property
    def notes(self) -> str:
        return next(text for path, text in self.raw.items() if path.endswith("NOTES.txt"))

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def kinds(self) -> list[str]:
        return sorted(d["kind"] for d in self.docs)

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def pod(self) -> dict[str, Any]:
        return self.deployment["spec"]["template"]["spec"]

    @property
    def container(self) -> dict[str, Any]:
        (container,) = self.pod["containers"]
        return container

    @property
    def config_text(self) -> str:
        return self.one("ConfigMap", f"{FULLNAME}-config")["data"]["config.yaml"]

    @property
    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_text)

    @property
    def checksum(self) -> str:
        return self.deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    def env(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.container["env"]}

    def volume(self, name: str) -> dict[str, Any]:
        (volume,) = [v for v in self.pod["volumes"] if v["name"] == name]
        return volume

    def mount(self, name: str) -> dict[str, Any]:
        (mount,) = [m for m in self.container["volumeMounts"] if m["name"] == name]
        return mount


def render(chart: helm.Chart, values: dict[str, Any] | None = None) -> Rendered:
    return Rendered(chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True))


def render_error(chart: helm.Chart, values: dict[str, Any]) -> str:
    with pytest.raises((helm.HelmValuesError, helm.HelmRenderError)) as info:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return str(info.value)


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        _merge_into(out, copy.deepcopy(layer))
    return out


def _merge_into(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge_into(dst[key], value)
        else:
            dst[key] = value


def validate_manifests(rendered: Rendered) -> None:
    for doc in rendered.docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in CUSTOM_RESOURCES:
            assert doc["metadata"]["name"] and doc["metadata"]["namespace"] == NAMESPACE
            continue
        try:
            kubernetes_validate_utils.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate_utils.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} at {path}: {exc.message}")


def load_rendered_config(rendered: Rendered, tmp_path: Path) -> Settings:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(rendered.config_text)
    return load_settings(config_file=config_file)
