"""Chart render tests for the policy files: their source, their names, and their mount.

The worker must see exactly the files a pack holds: the same names, hence the same ids and
titles as from a local directory, and the same bytes. A policy file may have any name one
file can have, minus control characters and a leading "." (the rule lives in
worker.tools.chart_schema and is written into the chart's schema); names that are not valid
ConfigMap keys are stored under a derived key and mounted under their own name. The same
cases are tried on both sides: through the chart (schema, ConfigMap, volume) and through the
worker's loader.
"""

from __future__ import annotations

from pathlib import Path

import helm_python as helm
import pytest

from worker.policies import load_policies, parse_policy
from worker.tools.chart_schema import policy_file_name_problem

from .support import (
    CHART_DIR,
    FULLNAME,
    NAMESPACE,
    POLICY_DIR,
    RELEASE,
    SPAM_POLICY,
    Rendered,
    load_rendered_config,
    render,
    validate_manifests,
)

POLICIES_CM = f"{FULLNAME}-policies"


def test_policy_change_does_not_roll_pods(chart: helm.Chart) -> None:
    one = render(chart, {"policyPack": {"inline": {"spam.md": SPAM_POLICY}}})
    two = render(
        chart,
        {
            "policyPack": {
                "inline": {"spam.md": SPAM_POLICY.replace("link farms", "link farms, SEO spam")}
            }
        },
    )
    policies = f"{FULLNAME}-policies"
    assert one.one("ConfigMap", policies)["data"] != two.one("ConfigMap", policies)["data"]
    assert one.checksum == two.checksum
    assert one.deployment["spec"]["template"] == two.deployment["spec"]["template"]


def test_policy_source_switch_does_not_roll_pods(chart: helm.Chart, default: Rendered) -> None:
    inline = render(chart, {"policyPack": {"inline": {"spam.md": SPAM_POLICY}}})
    assert inline.checksum == default.checksum


# ---------------------------------------------------------------------------------------
# Policies


def test_example_pack_is_the_repository_pack_verbatim(default: Rendered, tmp_path: Path) -> None:
    data = default.one("ConfigMap", f"{FULLNAME}-policies")["data"]
    repo_files = {
        p.name: p.read_text(encoding="utf-8")
        for p in POLICY_DIR.glob("*.md")
        if p.name.lower() != "readme.md"
    }
    assert repo_files, "the repository's example pack is missing"
    assert data == repo_files
    # Mounted as the ConfigMap's files, the worker loads them.
    for name, text in data.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    registry = load_policies(tmp_path)
    assert len(registry) == len(repo_files)


def test_packaged_chart_carries_the_example_pack(tmp_path: Path, default: Rendered) -> None:
    # files/policies is a symlink to the repository's policies/; `helm package` must
    # resolve it so a chart pulled from a registry still installs with the pack.
    with helm.Chart.load(CHART_DIR) as source:
        archive = source.save(tmp_path)
    with helm.Chart.load(archive) as packaged:
        rendered = render(packaged)
    name = f"{FULLNAME}-policies"
    assert rendered.one("ConfigMap", name)["data"] == default.one("ConfigMap", name)["data"]


def test_inline_policies_replace_the_example_pack(chart: helm.Chart, tmp_path: Path) -> None:
    rendered = render(chart, {"policyPack": {"inline": {"spam.md": SPAM_POLICY}}})
    data = rendered.one("ConfigMap", f"{FULLNAME}-policies")["data"]
    assert data == {"spam.md": SPAM_POLICY}
    assert parse_policy(data["spam.md"]).id == "spam"
    assert rendered.volume("policies")["configMap"]["name"] == f"{FULLNAME}-policies"


def test_inline_policies_may_be_plain_text_without_front_matter(chart: helm.Chart) -> None:
    plain = "# Spam\n\nFlag unsolicited bulk messages.\n"
    values = {
        "policyPack": {"inline": {"spam.txt": plain}},
        "config": {"policies": {"default": ["spam"]}},
    }
    data = render(chart, values).one("ConfigMap", f"{FULLNAME}-policies")["data"]
    assert data == {"spam.txt": plain}
    policy = parse_policy(data["spam.txt"], Path("spam.txt"))
    assert (policy.id, policy.title, policy.front_matter) == ("spam", "Spam", False)


@pytest.mark.parametrize(
    "text",
    [
        SPAM_POLICY,
        SPAM_POLICY.rstrip("\n"),  # no final newline
        SPAM_POLICY + "\n\n",  # several
        SPAM_POLICY.replace("# Spam", "# Spam \u00e9\u2603\n\n\tindented: with: colons"),
    ],
)
def test_policy_text_reaches_the_configmap_byte_for_byte(chart: helm.Chart, text: str) -> None:
    # policy_version is the sha256 of the text; the chart must not alter it.
    files = {"a.md": text.replace("id: spam", "id: a"), "z.md": text.replace("id: spam", "id: z")}
    rendered = render(chart, {"policyPack": {"inline": files}})
    assert rendered.one("ConfigMap", f"{FULLNAME}-policies")["data"] == files


def test_existing_policy_configmap_is_mounted_not_rendered(chart: helm.Chart) -> None:
    rendered = render(chart, {"policyPack": {"existingConfigMap": "team-policies"}})
    assert [cm["metadata"]["name"] for cm in rendered.all("ConfigMap")] == [f"{FULLNAME}-config"]
    assert rendered.volume("policies")["configMap"]["name"] == "team-policies"
    mount = rendered.mount("policies")
    assert "subPath" not in mount, "subPath mounts never see ConfigMap updates"
    assert "Edit that ConfigMap" in rendered.notes


def test_policy_mount_path_is_the_worker_policy_dir(chart: helm.Chart, tmp_path: Path) -> None:
    rendered = render(chart, {"policyPack": {"mountPath": "/policies"}})
    assert rendered.mount("policies")["mountPath"] == "/policies"
    assert load_rendered_config(rendered, tmp_path).policies.dir == Path("/policies")


# ---------------------------------------------------------------------------------------
# File names: the chart's rule and the worker's loader, tried with the same cases

LONGEST = "x" * 252 + ".md"  # 255 characters, the most one file name may have
# (name, whether the chart takes it). Names of published packs: spaces, capitals,
# punctuation, non-ASCII letters.
NAME_CASES = [
    ("hate-speech.md", True),
    ("Hate Speech.md", True),
    ("Éthique (v2).md", True),
    ("TVEC policy — annex #1.md", True),
    ("it's a & b; c=d, e+f [g] {h} @i ~j.txt", True),
    ("spam.txt", True),
    (LONGEST, True),
    ("team/spam.md", False),  # a path, not a name
    (".hidden.md", False),  # hidden files are never policies
    ("..data", False),  # Kubernetes' own entry in a ConfigMap mount
    ("tab\there.md", False),
    ("new\nline.md", False),
    ("x" * 256, False),
]
TAKEN = [name for name, taken in NAME_CASES if taken]
REFUSED = [name for name, taken in NAME_CASES if not taken]


def policy_text(name: str, front_matter: bool) -> str:
    body = f"# Rules for {name[:20]}\n\nFlag content that breaks the rule.\n"
    policy_id = f"p{sorted(TAKEN).index(name)}"
    return f"---\nid: {policy_id}\ntitle: T\n---\n{body}" if front_matter else body


def mounted(rendered: Rendered, into: Path) -> Path:
    """The policy directory as the kubelet lays out the chart's ConfigMap volume."""
    data = rendered.one("ConfigMap", POLICIES_CM)["data"]
    volume = rendered.volume("policies")["configMap"]
    items = volume.get("items") or [{"key": key, "path": key} for key in data]
    for item in items:
        (into / item["path"]).write_text(data[item["key"]], encoding="utf-8")
    return into


def local_pack(files: dict[str, str], into: Path) -> Path:
    for name, text in files.items():
        (into / name).write_text(text, encoding="utf-8")
    return into


def summary(directory: Path) -> list[tuple[str, str, str, str | None]]:
    registry = load_policies(directory)
    return sorted((p.id, p.title, p.version, p.path.name if p.path else None) for p in registry)


@pytest.mark.parametrize("name, taken", NAME_CASES, ids=[repr(n)[:30] for n, _ in NAME_CASES])
def test_the_exported_rule_is_the_schema_rule(chart: helm.Chart, name: str, taken: bool) -> None:
    assert (policy_file_name_problem(name) is None) == taken
    values = {"policyPack": {"inline": {name: SPAM_POLICY}}}
    if taken:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    else:
        with pytest.raises(helm.HelmValuesError, match="invalid propertyName"):
            chart.render(values, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize("front_matter", [True, False], ids=["front matter", "plain"])
def test_the_worker_sees_the_same_pack_through_the_chart(
    chart: helm.Chart, tmp_path: Path, front_matter: bool
) -> None:
    """Every name the chart takes reaches the worker unchanged: same files, ids, titles."""
    # Without front matter, "hate-speech.md" and "Hate Speech.md" both mean id hate-speech.
    names = TAKEN if front_matter else [n for n in TAKEN if n != "hate-speech.md"]
    files = {name: policy_text(name, front_matter) for name in names}
    rendered = render(chart, {"policyPack": {"inline": files}})
    validate_manifests(rendered)
    (tmp_path / "mounted").mkdir()
    through_chart = mounted(rendered, tmp_path / "mounted")
    (tmp_path / "local").mkdir()
    direct = local_pack(files, tmp_path / "local")
    assert sorted(p.name for p in through_chart.iterdir()) == sorted(files)
    assert summary(through_chart) == summary(direct)
    assert len(summary(direct)) == len(names)


def test_only_names_that_are_not_keys_are_renamed_in_the_configmap(chart: helm.Chart) -> None:
    rendered = render(chart, {"policyPack": {"inline": {n: SPAM_POLICY for n in TAKEN}}})
    keys = rendered.one("ConfigMap", POLICIES_CM)["data"]
    items = {i["path"]: i["key"] for i in rendered.volume("policies")["configMap"]["items"]}
    assert set(items) == set(TAKEN) and set(items.values()) == set(keys)
    assert items["hate-speech.md"] == "hate-speech.md"
    assert items["Hate Speech.md"].startswith("Hate_Speech.md-")


def test_a_pack_of_key_safe_names_mounts_the_whole_configmap(default: Rendered) -> None:
    """No item list: files can then be added or removed without rolling the pods."""
    assert "items" not in default.volume("policies")["configMap"]


@pytest.mark.parametrize("name", REFUSED, ids=[repr(n)[:30] for n in REFUSED])
def test_names_the_chart_refuses_never_load_as_one_policy_file(tmp_path: Path, name: str) -> None:
    """Each refused name is one the worker cannot hold as one policy file in its directory,
    or one it skips; control characters are the chart's own narrowing (the loader reads them)."""
    (tmp_path / "keep.md").write_text(SPAM_POLICY, encoding="utf-8")
    try:
        (tmp_path / name).write_text(SPAM_POLICY.replace("id: spam", "id: other"), "utf-8")
    except OSError:
        return  # not a name one file in one directory can have
    ids = {p.id for p in load_policies(tmp_path)}
    if any(ord(c) < 32 for c in name):
        assert ids == {"spam", "other"}
    else:
        assert ids == {"spam"}
