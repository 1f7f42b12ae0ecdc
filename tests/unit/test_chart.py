"""The Helm chart, rendered through Helm's own engine (helm-python-sdk) and checked offline.

Every rendered manifest is validated against the Kubernetes API schemas of KUBE_VERSION
(kubernetes-validate, strict: unknown fields fail). The custom resources (ServiceMonitor,
ScaledObject, TriggerAuthentication) have no schema there; their fields are checked by
hand. The worker's config.yaml the chart renders is loaded through the worker's own
settings loader, which rejects unknown keys.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate_utils

from worker.config import Settings, load_settings
from worker.policies import load_policies, parse_policy

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    # Helm logs one INFO line per load: files/policies is a symlink to the repository's
    # policies/ directory, which it follows. That is intended.
    loaded = helm.Chart.load(CHART_DIR)
    yield loaded
    loaded.close()


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


@pytest.fixture(autouse=True)
def _no_worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered config must stand on its own: no WORKER_* from the test environment."""
    import os

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


# ---------------------------------------------------------------------------------------
# Valid manifests


def test_tools_are_the_real_ones() -> None:
    assert helm.helm_sdk_version().lstrip("v").split(".")[0] == "4"
    assert KUBE_VERSION in {v.rsplit(".", 1)[0] for v in kubernetes_validate_utils.all_versions()}


def test_chart_lints_clean_in_strict_mode() -> None:
    for values in ({}, FULL_VALUES, DEV_SECRET_VALUES, HPA_VALUES):
        report = helm.lint(CHART_DIR, values, strict=True, kube_version=f"v{KUBE_VERSION}.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"] and not problems, report


def test_default_render_is_a_complete_valid_install(default: Rendered) -> None:
    validate_manifests(default)
    assert default.kinds() == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    assert default.deployment["spec"]["replicas"] == 1
    # Everything the pod references is rendered by the chart itself.
    configmaps = {cm["metadata"]["name"] for cm in default.all("ConfigMap")}
    for volume in default.pod["volumes"]:
        if "configMap" in volume:
            assert volume["configMap"]["name"] in configmaps
        assert "secret" not in volume and "persistentVolumeClaim" not in volume
    assert default.pod["serviceAccountName"] == default.one("ServiceAccount")["metadata"]["name"]
    assert "EXAMPLE policy pack" in default.notes


def test_everything_on_renders_valid_manifests(full: Rendered) -> None:
    validate_manifests(full)
    assert full.kinds() == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "ScaledObject",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
        "TriggerAuthentication",
    ]
    assert full.container["image"] == "registry.example/moderation-worker@sha256:" + "a" * 64
    assert full.pod["runtimeClassName"] == "nvidia"
    assert full.pod["priorityClassName"] == "gpu-high"
    assert full.pod["nodeSelector"] == FULL_VALUES["nodeSelector"]
    assert full.pod["affinity"] == FULL_VALUES["affinity"]
    assert full.pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert full.one("PodDisruptionBudget")["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": full.deployment["spec"]["selector"]["matchLabels"]},
    }


def test_dev_secrets_and_hostpath_render_valid_manifests(dev: Rendered) -> None:
    validate_manifests(dev)
    secrets = {s["metadata"]["name"]: s for s in dev.all("Secret")}
    assert set(secrets) == {
        f"{FULLNAME}-kafka-sasl",
        f"{FULLNAME}-kafka-tls",
        f"{FULLNAME}-hf-token",
    }
    assert set(secrets[f"{FULLNAME}-kafka-tls"]["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    assert dev.volume("model-cache")["hostPath"]["path"] == "/var/lib/moderation-worker/models"
    assert "plain values" in dev.notes


def test_hpa_renders_valid_manifests_instead_of_keda(hpa: Rendered) -> None:
    validate_manifests(hpa)
    hpa_doc = hpa.one("HorizontalPodAutoscaler")
    assert hpa_doc["apiVersion"] == "autoscaling/v2"
    assert hpa_doc["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": hpa.deployment["metadata"]["name"],
    }
    assert hpa_doc["spec"]["maxReplicas"] == 4
    assert not hpa.all("ScaledObject")
    assert "replicas" not in hpa.deployment["spec"], "the HPA owns the replica count"


# ---------------------------------------------------------------------------------------
# The pod


@pytest.mark.parametrize(
    "values, gpus",
    [({}, 1), ({"config": {"engine": {"tensor_parallel_size": 2}}}, 2), ({"gpu": {"count": 4}}, 4)],
)
def test_pod_requests_its_gpus(chart: helm.Chart, values: dict[str, Any], gpus: int) -> None:
    resources = render(chart, values).container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == gpus
    assert resources["limits"]["nvidia.com/gpu"] == gpus
    assert resources["requests"]["cpu"] == "4" and resources["limits"]["memory"] == "64Gi"


def test_gpu_resource_name_is_configurable_for_mig(chart: helm.Chart) -> None:
    resources = render(chart, {"gpu": {"resourceName": "nvidia.com/mig-3g.40gb"}}).container[
        "resources"
    ]
    assert resources["limits"] == {"memory": "64Gi", "nvidia.com/mig-3g.40gb": 1}


def test_gpu_nodes_are_tolerated_and_selectable(default: Rendered, full: Rendered) -> None:
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in default.pod[
        "tolerations"
    ]
    assert full.pod["topologySpreadConstraints"] == FULL_VALUES["topologySpreadConstraints"]


def test_probes_hit_the_worker_health_endpoints(default: Rendered) -> None:
    c = default.container
    (port,) = c["ports"]
    assert port == {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    startup = c["startupProbe"]
    # Model download and load take minutes: allow at least 15 before a restart.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 15 * 60


def test_health_port_moves_container_port_and_config_together(
    chart: helm.Chart, tmp_path: Path
) -> None:
    rendered = render(chart, {"config": {"health": {"port": 9100}}})
    assert rendered.container["ports"][0]["containerPort"] == 9100
    assert load_rendered_config(rendered, tmp_path).health.port == 9100
    service = rendered.one("Service")["spec"]["ports"][0]
    assert service["targetPort"] == "http"


@pytest.mark.parametrize("drain", [30, 45.5, 300])
def test_grace_period_exceeds_drain_deadline(chart: helm.Chart, drain: float) -> None:
    rendered = render(chart, {"config": {"drain_deadline_s": drain}})
    grace = rendered.pod["terminationGracePeriodSeconds"]
    assert isinstance(grace, int) and grace > drain
    assert rendered.config["drain_deadline_s"] == drain


def test_container_is_locked_down(default: Rendered) -> None:
    pod_sc = default.pod["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = default.container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert default.pod["automountServiceAccountToken"] is False
    assert default.pod["enableServiceLinks"] is False


def test_writable_paths_are_volumes(default: Rendered) -> None:
    mounts = {m["mountPath"]: m["name"] for m in default.container["volumeMounts"]}
    for path in ("/tmp", "/home/worker", "/var/cache/moderation-worker", "/dev/shm", "/models"):
        assert path in mounts, path
    assert default.volume("dshm")["emptyDir"]["medium"] == "Memory"
    env = default.env()
    assert env["HF_HOME"]["value"] == "/models/huggingface"
    for name in (
        "XDG_CACHE_HOME",
        "VLLM_CACHE_ROOT",
        "TRITON_CACHE_DIR",
        "TORCHINDUCTOR_CACHE_DIR",
    ):
        assert env[name]["value"].startswith("/var/cache/moderation-worker"), name
    # Read-only mounts for configuration.
    assert default.mount("config")["readOnly"] is True
    assert default.mount("policies")["readOnly"] is True


def test_container_runs_the_worker_with_the_mounted_config(default: Rendered) -> None:
    assert default.container["args"] == ["run", "--config", "/etc/moderation-worker/config.yaml"]
    config_mount = default.mount("config")
    assert config_mount["mountPath"] == "/etc/moderation-worker/config.yaml"
    assert config_mount["subPath"] == "config.yaml"
    assert default.volume("config")["configMap"]["name"] == f"{FULLNAME}-config"


# ---------------------------------------------------------------------------------------
# config.yaml


@pytest.mark.parametrize("variant", ["default", "full", "dev", "hpa"])
def test_rendered_config_loads_in_the_worker(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    rendered: Rendered = request.getfixturevalue(variant)
    settings = load_rendered_config(rendered, tmp_path)
    assert settings.policies.dir == Path("/etc/moderation-worker/policies")
    assert settings.health.enabled and settings.health.host == "0.0.0.0"


def test_rendered_config_carries_the_values(full: Rendered, tmp_path: Path) -> None:
    settings = load_rendered_config(full, tmp_path)
    assert settings.kafka.bootstrap_servers == FULL_VALUES["config"]["kafka"]["bootstrap_servers"]
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka.sasl_password is None, "no password may land in a ConfigMap"
    assert settings.topics.content == "ugc-content" and settings.topics.partitions == 12
    assert settings.engine.quantization == "fp8"
    assert settings.engine.gpu_memory_utilization == 0.92
    assert settings.engine.extra_args == {"enforce_eager": True}
    assert settings.routing.policies["spam"].review_low == 0.3
    assert settings.policies.default == ["spam"]
    assert settings.log.level == "DEBUG"
    assert "sasl_password:" not in full.config_text


def test_default_config_matches_worker_defaults_where_the_chart_does_not_choose(
    default: Rendered, tmp_path: Path
) -> None:
    chart_settings = load_rendered_config(default, tmp_path).model_dump()
    worker_defaults = Settings().model_dump()
    # Deliberate chart choices for a cluster; everything else is the worker's default.
    chosen = {
        ("kafka", "bootstrap_servers"),
        ("engine", "max_model_len"),
        ("policies", "dir"),
        ("log", "format"),
    }
    for section, fields in worker_defaults.items():
        if not isinstance(fields, dict):
            assert chart_settings[section] == fields, section
            continue
        for field, value in fields.items():
            if (section, field) not in chosen:
                assert chart_settings[section][field] == value, f"{section}.{field}"


@pytest.mark.parametrize(
    "expression, path, expected",
    [
        (
            "config.routing.policies.hate-speech.review_low=0.3",
            ("routing", "policies", "hate-speech", "review_low"),
            0.3,
        ),
        (
            "config.routing.policies.violence.threshold=0.65",
            ("routing", "policies", "violence", "threshold"),
            0.65,
        ),
        ("config.routing.review_high=0.9", ("routing", "review_high"), 0.9),
        ("config.engine.gpu_memory_utilization=0.92", ("engine", "gpu_memory_utilization"), 0.92),
        ("config.engine.quantization=fp8", ("engine", "quantization"), "fp8"),
        ("config.engine.request_timeout_s=2.5", ("engine", "request_timeout_s"), 2.5),
        ("config.batch.max_items=128", ("batch", "max_items"), 128),
        ("config.batch.linger_ms=2.5", ("batch", "linger_ms"), 2.5),
        ("config.drain_deadline_s=60", ("drain_deadline_s",), 60.0),
        ("config.cache.enabled=false", ("cache", "enabled"), False),
        ("config.cache.max_entries=5000", ("cache", "max_entries"), 5000),
        ("config.cache.max_bytes=2097152", ("cache", "max_bytes"), 2097152),
        ("config.cache.ttl_s=600.5", ("cache", "ttl_s"), 600.5),
        ("config.shadow.sample=0.25", ("shadow", "sample"), 0.25),
        ("config.topics.shadow=ugc-shadow", ("topics", "shadow"), "ugc-shadow"),
        ("config.kafka.fetch_max_bytes=67108864", ("kafka", "fetch_max_bytes"), 67108864),
    ],
)
def test_set_overrides_land_in_the_worker_config(
    chart: helm.Chart, tmp_path: Path, expression: str, path: tuple[str, ...], expected: Any
) -> None:
    # --set types only integers and booleans: "0.3" arrives as the string "0.3". The schema
    # lets decimal strings through and the worker parses them.
    rendered = render(chart, helm.parse_set_string(expression))
    settings: Any = load_rendered_config(rendered, tmp_path).model_dump()
    for part in path:
        settings = settings[part]
    assert settings == expected and isinstance(settings, type(expected)), settings


def test_per_policy_override_is_the_band_the_worker_routes_with(
    chart: helm.Chart, tmp_path: Path
) -> None:
    from worker.routing import thresholds_for

    rendered = render(
        chart, helm.parse_set_string("config.routing.policies.hate-speech.review_low=0.3")
    )
    settings = load_rendered_config(rendered, tmp_path)
    policy = parse_policy((POLICY_DIR / "hate-speech.md").read_text(encoding="utf-8"))
    band = thresholds_for(policy, settings.routing)
    assert band.review_low == 0.3
    assert band.review_high == 0.8  # the global value, untouched


def test_shadow_pair_from_values_is_the_one_the_worker_loads(
    chart: helm.Chart, tmp_path: Path
) -> None:
    """A draft in the pack, paired in values: the worker shadows production with it."""

    rendered = render(
        chart, helm.parse_set_string("config.shadow.pairs.hate-speech-v2=hate-speech")
    )
    settings = load_rendered_config(rendered, tmp_path)
    assert settings.shadow.pairs == {"hate-speech-v2": "hate-speech"}
    pack = tmp_path / "pack"
    pack.mkdir()
    for source in POLICY_DIR.glob("*.md"):
        (pack / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    draft = "---\nid: hate-speech-v2\n---\nA stricter draft.\n"
    (pack / "hate-speech-v2.md").write_text(draft, encoding="utf-8")
    registry = load_policies(pack, settings.policies.default, settings.shadow.pairs)
    assert registry.shadows == {"hate-speech-v2": "hate-speech"}
    assert "hate-speech-v2" not in registry.default


# ---------------------------------------------------------------------------------------
# Checksums: config changes roll pods (policy changes do not: test_chart_policies.py)


def test_config_change_rolls_pods(chart: helm.Chart, default: Rendered) -> None:
    for change in (
        {"batch": {"max_items": 32}},
        {"routing": {"policies": {"hate-speech": {"review_low": 0.3}}}},
        {"engine": {"max_model_len": 4096}},
        {"kafka": {"bootstrap_servers": "other:9092"}},
    ):
        assert render(chart, {"config": change}).checksum != default.checksum, change


def test_coop_settings_do_not_roll_the_worker(chart: helm.Chart, default: Rendered) -> None:
    coop = {"config": {"coop": {"url": "https://coop.example.org", "reporter_id": "x"}}}
    assert render(chart, coop).checksum == default.checksum


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
