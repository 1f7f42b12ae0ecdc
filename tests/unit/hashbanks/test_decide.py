"""Matches to per-policy decisions: label 1 wins, review wins among the winners, the nearest
match is named, and policies no matching bank covers are left to the model."""

from __future__ import annotations

from pathlib import Path

from worker.hashbanks import Bank, Match, decide, decide_parts


def _bank(name: str, policies: tuple[str, ...], label: int, route: str = "auto") -> Bank:
    return Bank(name, policies, label, route, Path(f"{name}.yaml"))  # type: ignore[arg-type]


GOOD = _bank("memes", ("spam", "violence"), 0)
BAD = _bank("removed", ("spam",), 1)
BAD_REVIEW = _bank("suspect", ("spam",), 1, "review")


def test_policies_no_bank_covers_are_left_out():
    assert decide([Match(BAD, "raw_text")], ["violence", "other"]) == {}
    assert decide([], ["spam"]) == {}


def test_a_known_good_match_never_hides_a_known_bad_one():
    for matches in (
        [Match(GOOD, "pdq", 0), Match(BAD, "pdq", 30)],
        [Match(BAD, "pdq", 30), Match(GOOD, "pdq", 0)],
    ):
        decided = decide(matches, ["spam", "violence"])
        assert decided["spam"].label == 1 and decided["spam"].match.bank is BAD
        assert decided["violence"].label == 0  # only the known-good bank covers it


def test_review_wins_among_the_banks_giving_the_label():
    decided = decide([Match(BAD, "url"), Match(BAD_REVIEW, "url")], ["spam"])
    assert decided["spam"].route == "review"
    # A review-routed known-good bank does not send a label-1 decision to review.
    good_review = _bank("maybe", ("spam",), 0, "review")
    decided = decide([Match(BAD, "url"), Match(good_review, "url")], ["spam"])
    assert (decided["spam"].label, decided["spam"].route) == (1, "auto")


def test_the_nearest_match_then_the_bank_name_is_named():
    near = _bank("zeta", ("spam",), 1)
    decided = decide([Match(BAD, "pdq", 12), Match(near, "pdq", 4)], ["spam"])
    assert decided["spam"].match == Match(near, "pdq", 4)
    alpha = _bank("alpha", ("spam",), 1)
    decided = decide([Match(BAD, "pdq", 4), Match(alpha, "pdq", 4)], ["spam"])
    assert decided["spam"].match.bank is alpha


def test_a_known_bad_part_decides_the_event():
    text, image = [], [Match(GOOD, "pdq", 3), Match(BAD, "pdq", 20)]
    decided = decide_parts([text, image], ["spam", "violence"])
    assert decided["spam"].label == 1 and decided["spam"].match == Match(BAD, "pdq", 20)
    # Known good for violence on one part only: the unmatched text still goes to the model.
    assert "violence" not in decided


def test_known_good_decides_only_when_every_part_is_known_good():
    meme, caption = [Match(GOOD, "pdq", 5)], [Match(GOOD, "raw_text")]
    assert decide_parts([caption, [], meme], ["spam"]) == {}
    decided = decide_parts([caption, meme], ["spam", "violence"])
    assert {p: (d.label, d.match) for p, d in decided.items()} == {
        "spam": (0, Match(GOOD, "raw_text")),
        "violence": (0, Match(GOOD, "raw_text")),
    }
    # One part alone is the whole event: as decide() says.
    assert decide_parts([meme], ["spam"]) == decide(meme, ["spam"])


def test_a_known_good_part_never_hides_a_known_bad_one_on_another_part():
    decided = decide_parts([[Match(GOOD, "pdq", 0)], [Match(BAD, "video_md5")]], ["spam"])
    assert (decided["spam"].label, decided["spam"].match.bank) == (1, BAD)
