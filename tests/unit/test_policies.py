import hashlib
from pathlib import Path

import pytest

from worker.policies import PolicyError, PolicyRegistry, load_policies, parse_policy

REPO = Path(__file__).resolve().parents[2]


def _write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text)


def test_version_is_sha256_of_the_text_sent():
    policy = parse_policy("---\nid: p\ntitle: P\n---\n\nFlag apples.\n")
    assert policy.text == "Flag apples."
    assert policy.version == hashlib.sha256(b"Flag apples.").hexdigest()


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("no front matter", "front matter"),
        ("---\nid: p\n---\n   \n", "empty"),
        ("---\nid: Bad Id\n---\nx", "'id'"),
        ("---\nid: p\nthreshold: 2\n---\nx", "threshold"),
        ("---\n[1, 2]\n---\nx", "mapping"),
        ("---\nid: [\n---\nx", "YAML"),
    ],
)
def test_bad_policy_files_are_clear_errors(source, needle):
    with pytest.raises(PolicyError, match=needle):
        parse_policy(source, Path("x.md"))


def test_duplicate_ids_name_both_files(tmp_path):
    _write(tmp_path, "a.md", "---\nid: same\n---\nA")
    _write(tmp_path, "b.md", "---\nid: same\n---\nB")
    with pytest.raises(PolicyError, match="duplicate policy id 'same'"):
        load_policies(tmp_path)


def test_unknown_ids_in_events_and_defaults(tmp_path):
    _write(tmp_path, "a.md", "---\nid: a\n---\nA")
    registry = load_policies(tmp_path)
    assert [p.id for p in registry.resolve(None)] == ["a"]
    with pytest.raises(PolicyError, match="unknown policy id"):
        registry.resolve(["a", "nope"])
    with pytest.raises(PolicyError, match="default policies not found: zz"):
        load_policies(tmp_path, default=["zz"])


def test_empty_registry_is_an_error():
    with pytest.raises(PolicyError, match="no policies"):
        PolicyRegistry([])


def test_example_pack_loads():
    registry = load_policies(REPO / "policies")
    ids = {p.id for p in registry}
    assert ids == {
        "hate-speech",
        "harassment",
        "violence",
        "sexual-content",
        "self-harm",
        "drugs",
        "toxic-speech",
    }
    for policy in registry:
        assert policy.path is not None and policy.path.stem == policy.id
