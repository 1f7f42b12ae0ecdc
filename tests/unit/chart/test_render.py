"""The chart renders a complete, valid install, and its config.yaml is the worker's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from kubernetes_validate import utils as kubernetes_validate_utils

from worker.config import Settings
from worker.policies import load_policies, parse_policy

from .support import (
    CHART_DIR,
    DEV_SECRET_VALUES,
    FULL_VALUES,
    FULLNAME,
    HPA_VALUES,
    KUBE_VERSION,
    POLICY_DIR,
    Rendered,
    load_rendered_config,
    render,
    validate_manifests,
)

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


def test_a_bank_directory_mounts_from_a_configmap_or_a_volume(
    chart: helm.Chart, tmp_path: Path
) -> None:
    """docs/hash-banks.md's recipe: the worker reads config.banks.dir, mounted by the pod."""
    path = "/etc/moderation-worker/banks"
    for source in (
        {"configMap": {"name": "hash-banks"}},
        {"persistentVolumeClaim": {"claimName": "hash-banks"}},
    ):
        rendered = render(
            chart,
            {
                "config": {"banks": {"dir": path, "pdq_distance": 24}},
                "extraVolumes": [{"name": "banks", **source}],
                "extraVolumeMounts": [{"name": "banks", "mountPath": path, "readOnly": True}],
            },
        )
        validate_manifests(rendered)
        banks = load_rendered_config(rendered, tmp_path).banks
        assert (str(banks.dir), banks.pdq_distance, banks.watch) == (path, 24, True)
        assert rendered.mount("banks")["mountPath"] == path
        assert rendered.volume("banks") == {"name": "banks", **source}


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
        (
            "config.engine.kind=remote,config.engine.url=http://v,config.engine.request_timeout_s=2.5",
            ("engine", "request_timeout_s"),
            2.5,
        ),
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
# Checksums: config changes roll pods (policy changes do not: test_policies.py)


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
