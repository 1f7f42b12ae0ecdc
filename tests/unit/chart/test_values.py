"""The chart's values: one declaration of each setting, checked at `helm install`.

The ``config`` block's schema is generated from worker/config/ and must be committed as
generated; bad values are refused by the schema, naming the field; the chart's own checks
cover only its own keys and how they meet ``config``; values of chart 0.1 are refused with
the key that replaced them.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import helm_python as helm
import pytest
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from worker.catalog import check_routing
from worker.config import ConfigError, Settings
from worker.policies import PolicyError, load_policies
from worker.tools import chart_schema

from .support import (
    CHART_DIR,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    ROOT,
    SPAM_POLICY,
    load_rendered_config,
    render,
    render_error,
)

# Every value of chart 0.1 that moved, and where it went (docs/deploy.md lists the same).
MOVED = {
    **{key: f"config.{key}" for key in ("kafka", "topics", "batch", "engine", "routing")},
    **{key: f"config.{key}" for key in ("policies", "cache", "shadow", "health", "log")},
    "drain_deadline_s": "config.drain_deadline_s",
    "coopAdapter.url": "config.coop.url",
    "coopAdapter.itemTypeId": "config.coop.item_type_id",
    "coopAdapter.reporterTypeId": "config.coop.reporter_type_id",
    "coopAdapter.reporterId": "config.coop.reporter_id",
    "coopAdapter.policies": "config.coop.policies",
    "coopAdapter.decisions": "config.coop.decisions",
    "coopAdapter.port": "config.coop.port",
    "coopAdapter.path": "config.coop.path",
    "coopAdapter.groupId": "config.coop.group_id",
}


def schema_error(chart: helm.Chart, values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmValuesError) as info:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return str(info.value)


# ---------------------------------------------------------------------------------------
# The schema is generated


def test_the_committed_schema_is_the_generated_one() -> None:
    committed = chart_schema.SCHEMA_PATH.read_text(encoding="utf-8")
    assert committed == chart_schema.schema_text(committed), f"run: {chart_schema.COMMAND}"


def test_the_check_command_fails_on_a_stale_schema_and_the_command_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "values.schema.json"
    text = chart_schema.SCHEMA_PATH.read_text(encoding="utf-8")
    stale.write_text(text.replace('"max_items"', '"max_itemz"', 1), encoding="utf-8")
    assert chart_schema.main(["--schema", str(stale), "--check"]) == 1
    assert f"run {chart_schema.COMMAND}" in capsys.readouterr().err
    assert chart_schema.main(["--schema", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == text
    assert chart_schema.main(["--schema", str(stale), "--check"]) == 0


def settings_models(annotation: Any) -> list[type[BaseModel]]:
    """The settings models a field holds: its own, or each of a union's (engine, by kind)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) is Annotated:
        return settings_models(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [model for arg in get_args(annotation) for model in settings_models(arg)]
    return []


def test_every_setting_is_in_the_schema_except_secrets(chart: helm.Chart) -> None:
    config = chart.schema["properties"]["config"]
    defs = config["$defs"]

    def walk(model: type[BaseModel], schema: dict[str, Any], where: str) -> None:
        assert schema["additionalProperties"] is False, where
        for name, field in model.model_fields.items():
            secret = "Secret" in str(field.annotation)
            assert (name in schema["properties"]) != secret, f"{where}{name}"
            for sub in settings_models(field.annotation):
                walk(sub, defs[sub.__name__], f"{where}{name}.")

    walk(Settings, config, "config.")


# ---------------------------------------------------------------------------------------
# Decimal strings (helm --set x=0.3) are accepted exactly where the worker accepts them

SAMPLES = ["0", "0.0", "00.5", ".5", "0.", "1", "1.0", "1.", "1.5", "2", "10", "-0.1", "-3", "x"]


def float_fields() -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(path, field, its schema node) for every float setting."""
    defs = chart_schema.config_schema()["$defs"]

    def walk(model: type[BaseModel], schema: dict[str, Any], where: str):
        for name, field in model.model_fields.items():
            subs = settings_models(field.annotation)
            for sub in subs:
                kind = f"({sub.__name__})" if len(subs) > 1 else ""
                yield from walk(sub, defs[sub.__name__], f"{where}{name}{kind}.")
            if not subs and "float" in str(field.annotation) and name in schema["properties"]:
                yield f"{where}{name}", field, schema["properties"][name]

    yield from walk(Settings, chart_schema.config_schema(), "")


@pytest.mark.parametrize("path, field, node", list(float_fields()), ids=lambda v: str(v)[:40])
def test_decimal_strings_pass_the_schema_iff_the_worker_takes_them(
    path: str, field: Any, node: dict[str, Any]
) -> None:
    (pattern,) = [b["pattern"] for b in node["anyOf"] if b.get("type") == "string"]
    worker = TypeAdapter(Annotated[field.annotation, *field.metadata])
    for sample in SAMPLES:
        try:
            worker.validate_python(sample)
            takes = True
        except ValidationError:
            takes = False
        assert bool(re.fullmatch(pattern, sample)) == takes, f"{path}={sample!r}"


# ---------------------------------------------------------------------------------------
# Bad values are refused with a message naming the field


@pytest.mark.parametrize(
    "values, field",
    [
        ({"routing": {"review_high": 2}}, "/config/routing/review_high"),
        ({"routing": {"threshold": -0.1}}, "/config/routing/threshold"),
        (helm.parse_set_string("config.routing.threshold=1.5")["config"], "/config/routing"),
        (
            {"routing": {"policies": {"hate-speech": {"review_low": 1.5}}}},
            "/config/routing/policies/hate-speech/review_low",
        ),
        ({"routing": {"policies": {"hate-speech": {"review_lo": 0.3}}}}, "review_lo"),
        ({"batch": {"max_items": "ten"}}, "/config/batch/max_items"),
        ({"batch": {"max_items": 0}}, "/config/batch/max_items"),
        ({"engine": {"gpu_memory_utilization": 1.2}}, "/config/engine/gpu_memory_utilization"),
        ({"engine": {"overlong": "drop"}}, "/config/engine/overlong"),
        ({"engine": {"max_model_len": 16}}, "/config/engine/max_model_len"),
        # Each engine kind takes only its own settings, and a remote one needs its servers.
        ({"engine": {"url": "http://vllm:8000"}}, "additional properties 'url' not allowed"),
        (
            {"engine": {"kind": "remote", "url": "http://v", "seed": 1}},
            "additional properties 'seed' not allowed",
        ),
        ({"engine": {"kind": "remote"}}, "missing property 'url'"),
        ({"engnie": {"max_model_len": 4096}}, "engnie"),
        ({"kafka": {"security_protocol": "TLS"}}, "/config/kafka/security_protocol"),
        ({"kafka": {"sasl_password": "hunter2"}}, "sasl_password"),
        ({"engine": {"api_key": "hunter2"}}, "api_key"),
        ({"coop": {"api_key": "hunter2"}}, "api_key"),
        ({"coop": {"decisions": {"act-remove": 2}}}, "/config/coop/decisions/act-remove"),
        ({"cache": {"ttl_s": 0}}, "/config/cache/ttl_s"),
        ({"shadow": {"sample": "1.5"}}, "/config/shadow/sample"),
        ({"log": {"level": "TRACE"}}, "/config/log/level"),
        ({"health": {"port": 70000}}, "/config/health/port"),
        ({"drain_deadline_s": 0}, "/config/drain_deadline_s"),
    ],
)
def test_schema_refuses_bad_settings(chart: helm.Chart, values: dict[str, Any], field: str) -> None:
    assert field in schema_error(chart, {"config": values})


@pytest.mark.parametrize(
    "values, field",
    [
        ({"replicas": 2}, "replicas"),
        ({"modelCache": {"type": "nfs"}}, "/modelCache/type"),
        ({"gpu": {"tolerations": {"key": "x"}}}, "/gpu/tolerations"),
        ({"remoteEngine": {"cpu": 1}}, "cpu"),
        ({"policyPack": {"inline": {"a/b.md": SPAM_POLICY}}}, "a/b.md"),
    ],
)
def test_schema_refuses_bad_chart_values(
    chart: helm.Chart, values: dict[str, Any], field: str
) -> None:
    assert field in schema_error(chart, values)


# ---------------------------------------------------------------------------------------
# The chart's own checks: its keys, and how they meet config


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": True}}},
            "enable one autoscaler, not both",
        ),
        (
            {"gpu": {"count": 1}, "config": {"engine": {"tensor_parallel_size": 2}}},
            "gpu.count (1) is smaller than config.engine.tensor_parallel_size (2)",
        ),
        (
            {"credentials": {"kafkaSasl": {"existingSecret": "s"}}},
            "config.kafka.security_protocol is PLAINTEXT",
        ),
        (
            {
                "config": {"kafka": {"sasl_password_file": "/mnt/p"}},
                "credentials": {"kafkaSasl": {"existingSecret": "s"}},
            },
            "credentials.kafkaSasl is set but",
        ),
        ({"credentials": {"kafkaTls": {"existingSecret": "t"}}}, "credentials.kafkaTls is set but"),
        (
            {
                "config": {"kafka": {"security_protocol": "SSL"}},
                "credentials": {"kafkaTls": {"existingSecret": "t", "keyKey": ""}},
            },
            "certKey and keyKey",
        ),
        (
            {
                "config": {"kafka": {"security_protocol": "SSL", "ssl_cafile": "/mnt/ca"}},
                "credentials": {"kafkaTls": {"existingSecret": "t"}},
            },
            "credentials.kafkaTls provides TLS files too",
        ),
        (
            {
                "config": {"kafka": {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}},
                "autoscaling": {"keda": {"enabled": True}},
            },
            "autoscaling.keda with SASL needs the password in credentials.kafkaSasl",
        ),
        (
            {"policyPack": {"existingConfigMap": "p", "inline": {"spam.md": SPAM_POLICY}}},
            "choose one source of policies",
        ),
        ({"policyPack": {"useExamplePack": False}}, "no policies configured"),
        (
            {"serviceMonitor": {"enabled": True}, "service": {"enabled": False}},
            "needs service.enabled",
        ),
        (
            {"config": {"policies": {"dir": "/elsewhere"}}},
            "config.policies.dir is set by policyPack.mountPath",
        ),
        ({"config": {"health": {"host": "127.0.0.1"}}}, "config.health.host is set by the chart"),
        ({"config": {"health": {"port": None}}}, "config.health.port is read by the chart"),
        (
            {
                "coopAdapter": {"enabled": True, "existingSecret": "k"},
                "config": {"coop": {"public_key_file": "/mnt/k.pem"}},
            },
            "config.coop.public_key_file is set by the chart",
        ),
    ],
)
def test_templates_refuse_inconsistent_chart_values(
    chart: helm.Chart, values: dict[str, Any], message: str
) -> None:
    assert message in render_error(chart, values)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"routing": {"review_low": 0.9, "review_high": 0.5}}, "review_low must not exceed"),
        ({"policies": {"default": ["no-such-policy"]}}, "default policies not found"),
        (
            {"routing": {"policies": {"no-such-policy": {"threshold": 0.7}}}},
            "routing.policies names policies that are not loaded: no-such-policy",
        ),
        ({"kafka": {"security_protocol": "SASL_SSL"}}, "sasl_mechanism is required"),
    ],
)
def test_the_worker_rules_are_left_to_the_worker(
    chart: helm.Chart, tmp_path: Path, values: dict, message: str
) -> None:
    """What only the worker can judge renders; the worker refuses it, naming it."""
    rendered = render(chart, {"config": values})
    pack = tmp_path / "pack"
    pack.mkdir()
    for name, text in rendered.one("ConfigMap", f"{FULLNAME}-policies")["data"].items():
        (pack / name).write_text(text, encoding="utf-8")
    with pytest.raises((ConfigError, PolicyError), match=re.escape(message)):
        settings = load_rendered_config(rendered, tmp_path)
        check_routing(load_policies(pack, settings.policies.default), settings.routing)


# ---------------------------------------------------------------------------------------
# Upgrading from chart 0.1


@pytest.mark.parametrize("old, new", MOVED.items())
def test_values_of_chart_0_1_are_refused_naming_their_new_place(
    chart: helm.Chart, old: str, new: str
) -> None:
    values: dict[str, Any] = {}
    parent, _, leaf = old.rpartition(".")
    (values.setdefault(parent, {}) if parent else values)[leaf] = {}
    message = render_error(chart, values)
    assert f"{old} -> {new}" in message and "Upgrading to chart 0.2" in message


def test_a_whole_chart_0_1_values_file_names_every_moved_key(chart: helm.Chart) -> None:
    old = {
        "kafka": {"bootstrap_servers": "b:9092"},
        "routing": {"review_low": 0.3},
        "coopAdapter": {"url": "https://coop.example.org", "groupId": "g"},
    }
    message = render_error(chart, old)
    for key in ("kafka", "routing", "coopAdapter.url", "coopAdapter.groupId"):
        assert f"{key} -> {MOVED[key]}" in message


def test_the_migration_table_in_the_deploy_guide_lists_every_moved_key() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = guide[guide.index("### Upgrading to chart 0.2") :]
    for old, new in MOVED.items():
        assert f"| `{old}` | `{new}` |" in section, old


# ---------------------------------------------------------------------------------------
# values.yaml documents the chart's keys


def test_values_cover_every_chart_key(chart: helm.Chart) -> None:
    """values.yaml lists every chart key the schema knows (so every option is documented
    there); the config block's keys are documented in worker/config/."""

    def walk(schema: dict[str, Any], values: Any, path: str) -> None:
        if schema.get("type") != "object" or "properties" not in schema:
            return
        assert isinstance(values, dict), path
        for key, sub in schema["properties"].items():
            if sub.get("deprecated") or path + key == "config":
                continue
            # Helm drops null defaults from the merged values; the raw file still has them.
            assert key in values, f"{path}{key} is in the schema but not in values.yaml"
            walk(sub, values[key], f"{path}{key}.")

    raw = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    walk(chart.schema, raw, "")


def test_chart_keys_are_camel_case(chart: helm.Chart) -> None:
    """The chart's own keys follow Helm's convention; only config keeps the worker's names."""

    def walk(schema: dict[str, Any], path: str) -> Iterator[str]:
        for key, sub in schema.get("properties", {}).items():
            if sub.get("deprecated") or path + key == "config":
                continue
            yield f"{path}{key}"
            yield from walk(sub, f"{path}{key}.")

    keys = list(walk(chart.schema, ""))
    assert len(keys) > 100
    assert [k for k in keys if not re.fullmatch(r"[a-z][a-zA-Z0-9]*", k.rsplit(".", 1)[-1])] == []


def test_values_config_differs_from_worker_defaults_only_where_the_chart_chooses() -> None:
    raw = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["config"]
    defaults = Settings().model_dump(mode="json")
    chosen = {"kafka.bootstrap_servers", "engine.max_model_len", "log.format"}
    for section, fields in raw.items():
        for field, value in fields.items() if isinstance(fields, dict) else [(None, fields)]:
            path = f"{section}.{field}" if field else section
            default = defaults[section][field] if field else defaults[section]
            assert (value != default) == (path in chosen), path


def test_every_values_key_is_documented() -> None:
    """Every key in values.yaml has a comment right above it, except the entries of
    free-form maps and lists whose parent is documented as a whole (config: worker/config/
    is its reference)."""
    free_form = {
        "config",
        "strategy",
        "resources",
        "tolerations",
        "podSecurityContext",
        "securityContext",
        "behavior",
        "metrics",
        "accessModes",
    }
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing keys
    undocumented = []
    previous = ""
    for line in lines:
        stripped = line.strip()
        if not stripped:
            previous = ""
            continue
        match = re.match(r"^(\s*)([A-Za-z_][\w.-]*):", line)
        if match and not stripped.startswith("#"):
            indent, key = len(match.group(1)), match.group(2)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            inside_free_form = any(k in free_form for _, k in stack)
            if not previous.startswith("#") and not inside_free_form:
                undocumented.append(".".join([k for _, k in stack] + [key]))
            stack.append((indent, key))
        previous = stripped
    assert not undocumented, f"undocumented values: {undocumented}"
