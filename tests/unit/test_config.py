import pytest

from worker.config import ConfigError, LocalEngineSettings, RemoteEngineSettings, load_settings


def test_env_nesting_and_yaml_precedence(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text("batch:\n  max_items: 8\n  linger_ms: 5\ntopics:\n  content: in\n")
    monkeypatch.setenv("WORKER_BATCH__MAX_ITEMS", "32")
    settings = load_settings(config)
    assert settings.batch.max_items == 32  # env wins over the file
    assert settings.batch.linger_ms == 5
    assert settings.topics.content == "in"


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("WORKER_BATCH__MAX_ITEMS", "0", "batch.max_items"),
        ("WORKER_ROUTING__REVIEW_HIGH", "1.5", "routing.review_high"),
        ("WORKER_KAFKA__SECURITY_PROTOCOL", "SASL_SSL", "sasl_mechanism"),
        ("WORKER_ENGINE__OVERLONG", "ignore", "engine.overlong"),
        ("WORKER_SHADOW__SAMPLE", "1.5", "shadow.sample"),
        ("WORKER_CACHE__MAX_ENTRIES", "0", "cache.max_entries"),
        ("WORKER_CACHE__TTL_S", "0", "cache.ttl_s"),
    ],
)
def test_bad_values_name_the_field(monkeypatch, env, value, needle):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=needle):
        load_settings()


def test_unknown_yaml_key_is_named(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("batch:\n  max_itemz: 8\n")
    with pytest.raises(ConfigError, match="batch.max_itemz"):
        load_settings(config)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(bad)


def test_password_file_wins(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    settings = load_settings(
        kafka={
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "u",
            "sasl_password": "other",
            "sasl_password_file": str(secret),
        }
    )
    assert settings.kafka.password() == "s3cret"
    assert "s3cret" not in repr(settings) and "other" not in repr(settings)


def test_inverted_per_policy_band_is_named(monkeypatch):
    monkeypatch.setenv(
        "WORKER_ROUTING__POLICIES", '{"hate-speech": {"review_low": 0.9, "review_high": 0.1}}'
    )
    with pytest.raises(ConfigError, match="routing.policies.hate-speech"):
        load_settings()


def test_remote_engine_needs_a_url(monkeypatch):
    monkeypatch.setenv("WORKER_ENGINE__KIND", "remote")
    with pytest.raises(ConfigError, match="engine.url .*: required when engine.kind is remote"):
        load_settings()
    monkeypatch.setenv("WORKER_ENGINE__URL", " , ")
    with pytest.raises(ConfigError, match="engine.url .*: .*url must name at least one server"):
        load_settings()


def test_engine_kind_picks_the_settings_class(monkeypatch):
    assert isinstance(load_settings().engine, LocalEngineSettings)
    monkeypatch.setenv("WORKER_ENGINE__KIND", "remote")
    monkeypatch.setenv("WORKER_ENGINE__URL", "http://a:8000")
    monkeypatch.setenv("WORKER_ENGINE__MAX_MODEL_LEN", "4096")
    engine = load_settings().engine
    assert isinstance(engine, RemoteEngineSettings) and engine.max_model_len == 4096


@pytest.mark.parametrize(
    "kind, setting, value, owner",
    [
        ("local", "url", "http://a:8000", "remote"),
        ("local", "api_key_file", "/k", "remote"),
        ("local", "prompts_per_request", "4", "remote"),
        ("remote", "gpu_memory_utilization", "0.5", "local"),
        ("remote", "extra_args", '{"enforce_eager": true}', "local"),
        ("remote", "tensor_parallel_size", "2", "local"),
    ],
)
def test_another_kinds_engine_setting_is_refused_by_name(monkeypatch, kind, setting, value, owner):
    monkeypatch.setenv("WORKER_ENGINE__KIND", kind)
    if kind == "remote":
        monkeypatch.setenv("WORKER_ENGINE__URL", "http://a:8000")
    monkeypatch.setenv(f"WORKER_ENGINE__{setting.upper()}", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        f"invalid configuration: engine.{setting} (env WORKER_ENGINE__{setting.upper()}): "
        f"a setting of engine.kind {owner}, not of {kind}"
    )


def test_another_kinds_engine_setting_in_the_file_is_refused_by_name(tmp_path):
    config = tmp_path / "worker.yaml"
    config.write_text("engine:\n  kind: remote\n  url: http://a:8000\n  dtype: half\n")
    with pytest.raises(ConfigError, match="engine.dtype .*a setting of engine.kind local"):
        load_settings(config)


def test_unknown_engine_kind_is_named(monkeypatch):
    monkeypatch.setenv("WORKER_ENGINE__KIND", "gpu")
    with pytest.raises(ConfigError, match="engine.kind \\(env WORKER_ENGINE__KIND\\): kind must"):
        load_settings()


def test_remote_engine_urls_and_key_file_win(monkeypatch, tmp_path):
    key = tmp_path / "key"
    key.write_text("from-file\n")
    monkeypatch.setenv("WORKER_ENGINE__KIND", "remote")
    monkeypatch.setenv("WORKER_ENGINE__URL", "http://a:8000/, http://b:8000")
    monkeypatch.setenv("WORKER_ENGINE__API_KEY", "from-env")
    monkeypatch.setenv("WORKER_ENGINE__API_KEY_FILE", str(key))
    engine = load_settings().engine
    assert engine.urls() == ["http://a:8000", "http://b:8000"]
    assert engine.key() == "from-file"
    assert "from-env" not in repr(engine) and "from-env" not in str(engine.model_dump())


# ---- the environment, held to the YAML file's standard ----------------------------------


@pytest.mark.parametrize(
    ("env", "nearest"),
    [
        ("WORKER_ENGNIE__MAX_MODEL_LEN", "WORKER_ENGINE__MAX_MODEL_LEN"),
        ("WORKER_KAFKA_BOOTSTRAP_SERVERS", "WORKER_KAFKA__BOOTSTRAP_SERVERS"),  # one '_' short
        ("WORKER_BATCH__MAX_ITEMZ", "WORKER_BATCH__MAX_ITEMS"),
        ("WORKER_ROUTING__POLICIES__SPAM__TRESHOLD", "WORKER_ROUTING__POLICIES__X__THRESHOLD"),
    ],
)
def test_unknown_worker_variables_are_refused_naming_the_nearest(monkeypatch, env, nearest):
    monkeypatch.setenv(env, "1")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert f"{env} names no setting" in message and repr(nearest) in message
    assert "\n" not in message


def test_kubernetes_service_links_are_not_settings(monkeypatch):
    for name in ("WORKER_SERVICE_HOST", "WORKER_SERVICE_PORT", "WORKER_PORT_8080_TCP_ADDR"):
        monkeypatch.setenv(name, "10.0.0.1")
    monkeypatch.setenv("WORKER_PORT", "tcp://10.0.0.1:8080")
    assert load_settings().health.port == 8080


def test_lists_and_mappings_take_a_plain_form(monkeypatch):
    monkeypatch.setenv("WORKER_POLICIES__DEFAULT", "hate-speech, spam")
    monkeypatch.setenv("WORKER_SHADOW__PAIRS", "hate-speech-v2:hate-speech,spam-v2:spam")
    monkeypatch.setenv("WORKER_ENGINE__EXTRA_ARGS", "enforce_eager:true,block_size:32")
    settings = load_settings()
    assert settings.policies.default == ["hate-speech", "spam"]
    assert settings.shadow.pairs == {"hate-speech-v2": "hate-speech", "spam-v2": "spam"}
    assert settings.engine.extra_args == {"enforce_eager": True, "block_size": 32}


def test_json_still_works_for_lists_and_mappings(monkeypatch):
    monkeypatch.setenv("WORKER_POLICIES__DEFAULT", '["a", "b"]')
    monkeypatch.setenv("WORKER_ENGINE__EXTRA_ARGS", '{"enforce_eager": true}')
    settings = load_settings()
    assert settings.policies.default == ["a", "b"]
    assert settings.engine.extra_args == {"enforce_eager": True}


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("WORKER_SHADOW__PAIRS", "draft", "WORKER_SHADOW__PAIRS: 'draft' is not key:value"),
        ("WORKER_ROUTING__POLICIES", "spam:0.7", "WORKER_ROUTING__POLICIES__HATE_SPEECH__"),
        ("WORKER_KAFKA", "bootstrap", "WORKER_KAFKA must be a JSON object"),
    ],
)
def test_values_that_fit_no_form_are_one_line_naming_the_variable(monkeypatch, env, value, needle):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_per_policy_env_form_reaches_ids_with_hyphens_and_dots(monkeypatch):
    monkeypatch.setenv("WORKER_ROUTING__POLICIES__HATE_SPEECH__THRESHOLD", "0.7")
    monkeypatch.setenv("WORKER_ROUTING__POLICIES__SPAM_V1_2__AUDIT_LABEL_1", "0.5")
    monkeypatch.setenv("WORKER_ROUTING__POLICIES__SELF_HARM__THRESHOLD", "0.2")
    routing = load_settings(routing={"policies": {"self_harm": {"threshold": 0.9}}}).routing
    assert routing.override("hate-speech").threshold == 0.7
    assert routing.override("spam-v1.2").audit_label_1 == 0.5
    assert routing.override("hate-speech-v2") is None
    # The exact id wins over an env spelling.
    routing = load_settings(
        routing={"policies": {"self_harm": {"threshold": 0.9}, "self-harm": {"threshold": 0.4}}}
    ).routing
    assert routing.override("self-harm").threshold == 0.4


def test_misspelt_yaml_keys_name_the_nearest_one_in_one_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("engine:\n  max_modle_len: 8\nbatch:\n  linger: 5\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    message = str(info.value)
    assert "engine.max_modle_len" in message and "'max_model_len'" in message
    assert "batch.linger" in message and "'linger_ms'" in message
    assert "\n" not in message


def test_env_names_reach_every_member_of_a_union_section():
    """A section may become a union of models (an engine per kind): any member's field is a
    setting, a field of none is not."""
    from typing import Annotated, Literal

    from pydantic import BaseModel, Field

    from worker.config.env import EnvError, env_target

    class Local(BaseModel):
        kind: Literal["local"] = "local"
        dtype: str = "auto"

    class Remote(BaseModel):
        kind: Literal["remote"]
        url: str

    class Root(BaseModel):
        engine: Annotated[Local | Remote, Field(discriminator="kind")] = Local()

    assert env_target(Root, "WORKER_ENGINE__URL") is str
    assert env_target(Root, "WORKER_ENGINE__DTYPE") is str
    with pytest.raises(EnvError, match="did you mean 'WORKER_ENGINE__URL'"):
        env_target(Root, "WORKER_ENGINE__URLS")
