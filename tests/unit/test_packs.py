"""Packs shaped like published ones (tests/packs): which files are policies, under which ids
and titles, why the others are not, and what ``policies check`` warns about."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.policies import PolicyError, load_policies, read_pack
from worker.policy_lint import lint

PACKS = Path(__file__).resolve().parents[1] / "packs"
SUPPORTING = "supporting document"
DOCUMENT = "repository document"
REPORT = "a report"
FILE_TYPE = "not a policy file type"
UNLISTED = "not listed in pack.yaml"

# pack -> {file: (id, title, where the id came from) for a policy, or why it is not one}
EXPECTED: dict[str, dict[str, tuple[str, str, str] | str]] = {
    "violent-groups": {
        "vg-policy/vg-policy": (
            "vg-policy",
            "Sample Violent Groups Policy for Text Classification",
            "folder name",
        ),
        "vg-policy/annex 1 - how we define violent groups.md": SUPPORTING,
        "vg-policy/annex 2 - groups and incidents.md": SUPPORTING,
        "vg-policy/evaluation report.md": REPORT,
    },
    # The same folder mounted as the pack itself: no folder around the main file, so the
    # annexes are policies too, with readable ids; the report still is not.
    "violent-groups/vg-policy": {
        "vg-policy": (
            "vg-policy",
            "Sample Violent Groups Policy for Text Classification",
            "file name",
        ),
        "annex 1 - how we define violent groups.md": (
            "annex-1-how-we-define-violent-groups",
            "How We Define Violent Groups",
            "file name",
        ),
        "annex 2 - groups and incidents.md": (
            "annex-2-groups-and-incidents",
            "Groups and Incidents for Reference",
            "file name",
        ),
        "evaluation report.md": REPORT,
    },
    "youth-safety": {
        "example_policies/risky-stunts/policy.md": (
            "risky-stunts",
            "Risky Stunts Policy (#RS)",
            "folder name",
        ),
        "example_policies/age-gated-goods/policy.md": (
            "age-gated-goods",
            "Age-Gated Goods Policy (#AG)",
            "folder name",
        ),
        "README.md": DOCUMENT,
        "LICENSE": DOCUMENT,
        "USAGE_POLICY": DOCUMENT,
        "example_policies/README.md": DOCUMENT,
        "datasets/risky-stunts.csv": FILE_TYPE,
    },
    "criteria-format": {
        "gambling_policy.md": ("gambling_policy", "Gambling Policy", "file name"),
        "betting_policy.md": ("betting_policy", "Betting Policy", "file name"),
        "toxicity_policy.md": ("toxicity_policy", "toxicity_policy", "file name"),
    },
    "hackathon": {
        "spam.md": ("spam", "Spam Policy (#SP)", "file name"),
        "policy_en.txt": ("policy_en", "policy_en", "file name"),
        "sectioned.md": ("sectioned", "Sectioned Policy", "file name"),
        "policy_v001.md": ("policy_v001", "Content Moderation Policy", "file name"),
        "README.md": DOCUMENT,
        "requirements.txt": DOCUMENT,
        "__init__.py": FILE_TYPE,
        "spam.py": FILE_TYPE,
    },
    "site-docs": {
        "Policies/acceptable-use/site-hateful-conduct.md": (
            "site-hateful-conduct",
            "Site Hateful Conduct",
            "file name",
        ),
        "Policies/acceptable-use/site-impersonation.md": (
            "site-impersonation",
            "Site Impersonation",
            "file name",
        ),
        "Policies/terms/site-terms-of-service.md": (
            "site-terms-of-service",
            "Site Terms of Service",
            "file name",
        ),
        "README.md": DOCUMENT,
        "CONTRIBUTING.md": DOCUMENT,
        "LICENSE.md": DOCUMENT,
    },
    "our-typos": {
        "spam.md": ("spam", "Spam", "front matter"),
        "Hate Speech.md": ("hate-speech", "Hate speech", "file name"),
        "Política de odio.md": ("politica-de-odio", "Política de odio", "file name"),
    },
    "with-manifest": {
        "main/main-policy": ("violent-groups", "Violent groups", "pack.yaml"),
        "annex 1 - definitions.md": (
            "annex-1-definitions",
            "Violent Group Definitions",
            "file name",
        ),
        "notes.md": UNLISTED,
    },
}


@pytest.mark.parametrize("pack", sorted(EXPECTED))
def test_each_file_of_a_published_shape_is_what_its_authors_meant(pack):
    got: dict[str, tuple[str, str, str] | str] = {}
    for result in read_pack(PACKS / pack):
        assert result.error is None, result.error
        if result.policy is not None:
            policy = result.policy
            got[result.file.name] = (policy.id, policy.title, policy.id_from)
        else:
            got[result.file.name] = result.file.skipped or ""
    expected = EXPECTED[pack]
    assert set(got) == set(expected)
    for name, want in expected.items():
        if isinstance(want, tuple):
            assert got[name] == want, name
        else:
            assert isinstance(got[name], str) and want in got[name], (name, got[name])
    load_policies(PACKS / pack)  # and the pack loads as a whole


def test_foreign_front_matter_is_kept_as_metadata_and_not_sent():
    registry = load_policies(PACKS / "site-docs")
    policy = registry.get("site-hateful-conduct")
    assert policy.metadata == {
        "shortTitle": "Hateful Conduct",
        "versions": {"fpt": "*"},
        "redirect_from": [
            "/site-policy/hateful-conduct",
            "/site-policy/community-rules#hateful-conduct",
        ],
    }
    assert policy.text.startswith("We do not allow posts")  # the body only
    assert policy.threshold is None and policy.front_matter


def _findings(pack: str, policy_id: str) -> list[tuple[str, str]]:
    policy = load_policies(PACKS / pack).get(policy_id)
    return [(f.level, f.message) for f in lint(policy)]


@pytest.mark.parametrize(
    ("pack", "policy_id", "expected"),
    [
        ("youth-safety", "risky-stunts", [
            ("warning", "line 5 (and 2 more lines): asks for VALID/INVALID labels"),
            ("warning", "line 11 (and 1 more line): tells the model how to answer"),
        ]),
        ("criteria-format", "betting_policy", [
            ("warning", "line 10 (and 2 more lines): tells the model how to answer"),
        ]),
        ("hackathon", "spam", [("warning", "line 2: asks for VALID/INVALID labels")]),
        ("hackathon", "policy_en", [
            ("warning", "line 1: a bare 'POLICY' line reads as the prompt's own heading"),
        ]),
        ("hackathon", "sectioned", [
            ("warning", "line 5: a bare 'CONTENT' line reads as the prompt's own heading"),
            ("warning", "line 8: a line of '=' reads as the underline of a prompt heading"),
        ]),
        ("hackathon", "policy_v001", [
            ("warning", "line 5 (and 1 more line): asks for JSON output"),
        ]),
        ("our-typos", "spam", [
            ("warning", "front matter key 'threshhold' is not one the worker reads (did you "
             "mean 'threshold'?)"),
            ("warning", "front matter key 'review_lo' is not one the worker reads (did you "
             "mean 'review_low'?)"),
        ]),
        ("site-docs", "site-hateful-conduct", [
            ("note", "front matter kept as metadata, not read: shortTitle, versions, "
             "redirect_from"),
        ]),
        ("violent-groups", "vg-policy", []),
        ("site-docs", "site-terms-of-service", [
            ("note", "front matter kept as metadata, not read: versions"),
        ]),
    ],
)  # fmt: skip
def test_what_check_warns_about(pack, policy_id, expected):
    found = _findings(pack, policy_id)
    assert len(found) == len(expected), found
    for (level, message), (want_level, want) in zip(found, expected, strict=True):
        assert level == want_level and message.startswith(want), message


def test_the_example_pack_has_no_warnings():
    for policy in load_policies(Path(__file__).resolve().parents[2] / "policies"):
        assert lint(policy) == [], policy.id


def test_a_misspelt_key_in_our_front_matter_is_ignored_not_used():
    spam = load_policies(PACKS / "our-typos").get("spam")
    assert spam.threshold is None and spam.review_low is None


def test_every_broken_file_is_named_at_once(tmp_path):
    (tmp_path / "a.md").write_text("---\nid: a\n---\n")
    (tmp_path / "b.md").write_text("---\nid: [\n---\nx")
    (tmp_path / "c.md").write_text("Flag c.")
    with pytest.raises(PolicyError) as info:
        load_policies(tmp_path)
    message = str(info.value)
    assert message.startswith("2 policy files cannot load: ")
    assert "a.md: policy body is empty" in message and "b.md: front matter is not valid YAML"
    assert "\n" not in message


def test_a_file_with_an_id_of_its_own_is_a_policy_whatever_its_name(tmp_path):
    (tmp_path / "README.md").write_text("---\nid: readme-rules\n---\nFlag rule breaking.")
    folder = tmp_path / "spam"
    folder.mkdir()
    (folder / "policy.md").write_text("Flag spam.")
    (folder / "spam report.md").write_text("---\nid: spam-reporting\n---\nFlag fake reports.")
    ids = sorted(p.id for p in load_policies(tmp_path))
    assert ids == ["readme-rules", "spam", "spam-reporting"]


def test_a_report_named_with_accents_is_still_a_report(tmp_path):
    """Packs written in other languages name their reports with accents ("Évaluation")."""
    (tmp_path / "harcèlement.md").write_text("Signaler le harcèlement.")
    (tmp_path / "Évaluation du modèle.md").write_text("Précision 0,91.")
    assert [p.id for p in load_policies(tmp_path)] == ["harcelement"]


def test_ids_are_readable_and_bounded():
    from worker.policies import id_from_name

    assert id_from_name("annex 1 - defining violent groups and their actors") == (
        "annex-1-defining-violent-groups-and-their-actors"
    )
    long = id_from_name("a very long policy file name " * 5)
    assert len(long) <= 64 and not long.endswith("-") and long.startswith("a-very-long-policy")
    assert id_from_name("x" * 300) == "x" * 64
    assert id_from_name("中文") == ""


def test_a_configmap_mount_loads_through_its_links(tmp_path):
    """Kubernetes mounts a ConfigMap as links into a hidden, timestamped folder."""
    data = tmp_path / "..2026_01_01"
    (data / "risky-stunts").mkdir(parents=True)
    (data / "risky-stunts" / "policy.md").write_text("Flag risky stunts.")
    (data / "spam.md").write_text("Flag spam.")
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "spam.md").symlink_to("..data/spam.md")
    (tmp_path / "risky-stunts").symlink_to("..data/risky-stunts")
    assert sorted(p.id for p in load_policies(tmp_path)) == ["risky-stunts", "spam"]


@pytest.mark.parametrize(
    ("manifest", "needle"),
    [
        ("policies:\n  - file: nope.md\n", "file 'nope.md' is not in"),
        ("policies:\n  - file: a.md\n    idd: x\n", "unknown key 'idd' (did you mean 'id'?)"),
        ("polices:\n  - a.md\n", "must be a mapping with a 'policies' list"),
        ("policies: [\n", "not valid YAML"),
    ],
)
def test_a_broken_manifest_is_one_clear_error(tmp_path, manifest, needle):
    (tmp_path / "a.md").write_text("Flag a.")
    (tmp_path / "pack.yaml").write_text(manifest)
    with pytest.raises(PolicyError, match="pack.yaml") as info:
        load_policies(tmp_path)
    assert needle in str(info.value)


def test_a_folder_that_cannot_be_listed_is_one_clear_error(tmp_path, monkeypatch):
    (tmp_path / "a.md").write_text("Flag a.")
    (tmp_path / "locked").mkdir()
    listing = Path.iterdir

    def iterdir(self):
        if self.name == "locked":  # as a folder of another user's, with mode 0700
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    with pytest.raises(PolicyError, match="cannot be read: Permission denied: .*locked"):
        load_policies(tmp_path)
