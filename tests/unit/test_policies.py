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
        ("---\nid: p\nFlag apples.", "never closed"),
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


def test_a_policy_without_front_matter_is_named_by_its_file():
    source = "\ufeff# Hate Speech Policy\n\nFlag attacks on people for who they are.\n"
    policy = parse_policy(source, Path("packs/Hate_Speech v2.md"))
    assert policy.id == "hate_speech-v2"
    assert policy.title == "Hate Speech Policy"
    assert policy.text == "# Hate Speech Policy\n\nFlag attacks on people for who they are."
    assert policy.version == hashlib.sha256(policy.text.encode()).hexdigest()
    assert not policy.front_matter and policy.threshold is None
    assert parse_policy("---\nid: p\n---\nx", Path("p.md")).front_matter


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("Flag spam.\n\n## Labels ##\nS1", "Labels"),  # the first heading, wherever it is
        ("  ### Spam\nFlag spam.", "Spam"),
        ("#hashtag is not a heading\nFlag spam.", "spam"),  # none: the file name
        ("Flag spam.", "spam"),
    ],
)
def test_title_is_the_first_heading_else_the_file_name(text, title):
    assert parse_policy(text, Path("spam.txt")).title == title


@pytest.mark.parametrize(
    ("source", "path", "needle"),
    [
        ("Flag spam.", None, "no file name"),
        ("  \n", Path("spam.md"), "empty"),
        ("Flag spam.", Path("___.md"), "rename the file"),
    ],
)
def test_plain_policies_that_cannot_load_say_why(source, path, needle):
    with pytest.raises(PolicyError, match=needle):
        parse_policy(source, path)


def test_a_published_pack_loads_beside_our_own_files(tmp_path):
    _write(tmp_path, "ours.md", "---\nid: ours\ntitle: Ours\n---\nFlag ours.")
    _write(tmp_path, "spam.md", "# Spam\nFlag spam.")
    _write(tmp_path, "Scams.TXT", "Flag scams.")
    for other in ("README.md", "LICENSE.txt", "CHANGELOG.md", ".spam.md.swp", "notes.pdf"):
        _write(tmp_path, other, "not a policy")
    (tmp_path / "sub.md").mkdir()
    registry = load_policies(tmp_path)
    assert sorted(p.id for p in registry) == ["ours", "scams", "spam"]
    assert {p.id: p.front_matter for p in registry} == {
        "ours": True, "scams": False, "spam": False,
    }  # fmt: skip


def test_a_plain_policy_and_a_front_matter_one_may_not_share_an_id(tmp_path):
    _write(tmp_path, "a.md", "---\nid: spam\n---\nA")
    _write(tmp_path, "spam.txt", "B")
    with pytest.raises(PolicyError, match="duplicate policy id 'spam'"):
        load_policies(tmp_path)


def test_a_policy_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    (tmp_path / "spam.txt").write_bytes(b"Flag \xff spam.")
    with pytest.raises(PolicyError, match="spam.txt: not UTF-8"):
        load_policies(tmp_path)


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


# ---- reloading: only files whose text changed are parsed again ---------------------------


def _pack(directory: Path, count: int) -> None:
    for n in range(count):
        _write(directory, f"p{n}.md", f"---\nid: p{n}\n---\nFlag content naming item {n}.\n")


@pytest.fixture
def parsed(monkeypatch):
    """The files parse_policy was called for, by name."""
    import worker.policies as policies

    seen: list[str] = []
    parse = policies.parse_policy

    def recording(source, path=None, found=None):
        seen.append(path.name)
        return parse(source, path, found)

    monkeypatch.setattr(policies, "parse_policy", recording)
    return seen


def test_a_reload_parses_exactly_the_changed_and_added_files(tmp_path, parsed):
    _pack(tmp_path, 6)
    before = load_policies(tmp_path)
    parsed.clear()
    _write(tmp_path, "p1.md", "---\nid: p1\n---\nFlag content naming item one, edited.\n")
    _write(tmp_path, "p6.md", "---\nid: p6\n---\nFlag content naming item 6.\n")
    (tmp_path / "p4.md").unlink()
    (tmp_path / "p2.md").write_text((tmp_path / "p2.md").read_text())  # rewritten, same text
    after = load_policies(tmp_path, previous=before)
    assert sorted(parsed) == ["p1.md", "p6.md"]
    fresh = load_policies(tmp_path)
    assert list(after) == list(fresh) and after.default == fresh.default
    assert "p4" not in {p.id for p in after}
    assert after.get("p2") is before.get("p2")  # the same parsed policy, not a copy


def test_a_bad_file_fails_the_reload_and_a_fixed_one_loads(tmp_path, parsed):
    _pack(tmp_path, 3)
    before = load_policies(tmp_path)
    _write(tmp_path, "p1.md", "---\nid: p1\nthreshold: 3\n---\nFlag it.\n")
    with pytest.raises(PolicyError, match="p1.md: 'threshold' must be a number"):
        load_policies(tmp_path, previous=before)
    parsed.clear()
    _write(tmp_path, "p1.md", "---\nid: p1\nthreshold: 0.3\n---\nFlag it.\n")
    after = load_policies(tmp_path, previous=before)
    assert parsed == ["p1.md"] and after.get("p1").threshold == 0.3


def test_a_file_moved_to_another_name_is_parsed_under_its_new_name(tmp_path, parsed):
    _pack(tmp_path, 2)
    before = load_policies(tmp_path)
    parsed.clear()
    (tmp_path / "p1.md").rename(tmp_path / "renamed.md")
    after = load_policies(tmp_path, previous=before)
    assert parsed == ["renamed.md"] and after.get("p1").path == tmp_path / "renamed.md"
