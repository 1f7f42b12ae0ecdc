"""classify's first pass: policies a bank decides never reach the cache or the engine (a
counting engine), the others do, and the verdict says which decided what; images and video
are matched by the signals the media step computed, and a known-good part decides only
when every part of the event is known good."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from worker.catalog import compile_catalog
from worker.config import MediaSettings, RoutingSettings
from worker.events import ContentEvent, Source, Verdict
from worker.hashbanks import load_banks, media_signals
from worker.hashbanks.signals import PDQ, VIDEO_MD5, image_pdq
from worker.media import FetchedMedia, MediaRef
from worker.media.decode import decode
from worker.policies import PolicyRegistry, parse_policy
from worker.scoring.classify import Job, build_verdict, hash_pass, score_jobs
from worker.scoring.verdict_cache import VerdictCache
from worker.testing import media_samples as samples

from .test_verdict_cache import CountingEngine

FRUIT = parse_policy("---\nid: fruit\n---\nFlag content that mentions any of: apple, mango.")
TOOLS = parse_policy("---\nid: tools\n---\nFlag content that mentions any of: hammer.")
DRAFT = parse_policy("---\nid: fruit-draft\nshadow_of: fruit\n---\nFlag: mango.")
SOURCE = Source(topic="content", partition=0, offset=0)


@pytest.fixture
def catalog(tokenizer):
    registry = PolicyRegistry([FRUIT, TOOLS, DRAFT])
    return compile_catalog(registry, tokenizer, 4096, RoutingSettings())


def _banks(directory: Path, route: str = "auto"):
    (directory / "removed.yaml").write_text(f"policies: [fruit]\nlabel: 1\nroute: {route}\n")
    (directory / "removed.txt").write_text("raw_text known spam text\n")
    (directory / "memes.yaml").write_text("policies: [fruit, tools]\nlabel: 0\n")
    (directory / "memes.txt").write_text("raw_text a famous meme\n")
    return load_banks(directory, 31)


def _job(catalog, content: str, n: int = 0, policies: tuple[str, ...] = ("fruit", "tools")) -> Job:
    entries = catalog.resolve(list(policies))
    shadows = ((0, catalog.entries["fruit-draft"]),)
    return Job(ContentEvent(id=f"i{n}", content=content), entries, shadows=shadows)


async def test_a_bank_decides_its_policies_and_the_engine_scores_the_rest(
    tokenizer, catalog, tmp_path
):
    engine = CountingEngine(tokenizer)
    banks = _banks(tmp_path)
    cache = VerdictCache(100, 10**6, 60)
    [scored] = await score_jobs(
        engine, [_job(catalog, "known spam text")], "dead_letter", 0, cache, banks
    )
    # Only tools went to the engine: fruit was decided and its shadow dropped with it.
    assert len(engine.requests) == 1
    assert scored.scores is not None and scored.scores[0] is None and scored.scores[1] is not None
    assert scored.shadow_scores == [] and scored.job.shadows == ()
    verdict = build_verdict(scored, "m", SOURCE)
    fruit, tools = orjson.loads(verdict.to_json())["verdicts"]
    assert fruit == {
        "policy": "fruit",
        "policy_version": FRUIT.version,
        "label": 1,
        "score": None,
        "confidence": None,
        "cached": False,
        "source": "hash_match",
        "match": {"bank": "removed", "signal_type": "raw_text", "distance": 0},
    }
    assert tools["source"] == "model" and tools["match"] is None and tools["score"] is not None
    assert verdict.label == 1
    assert Verdict.model_validate(verdict.model_dump()) == verdict


async def test_content_every_policy_of_which_is_decided_costs_no_request(
    tokenizer, catalog, tmp_path
):
    engine = CountingEngine(tokenizer)
    jobs = [_job(catalog, "a famous meme", n) for n in range(3)]
    results = await score_jobs(engine, jobs, "dead_letter", 0, None, _banks(tmp_path))
    assert engine.requests == []
    for scored in results:
        verdict = build_verdict(scored, "m", SOURCE)
        assert [(v.policy, v.label, v.source) for v in verdict.verdicts] == [
            ("fruit", 0, "hash_match"),
            ("tools", 0, "hash_match"),
        ]


@pytest.mark.parametrize("route", ["auto", "review"])
async def test_the_banks_rule_routes_the_item(tokenizer, catalog, tmp_path, route):
    engine = CountingEngine(tokenizer)
    jobs = [_job(catalog, "known spam text", policies=("fruit",))]
    [scored] = await score_jobs(engine, jobs, "dead_letter", 0, None, _banks(tmp_path, route))
    assert engine.requests == []
    assert build_verdict(scored, "m", SOURCE).route == route


async def test_without_a_match_everything_is_scored_as_before(tokenizer, catalog, tmp_path):
    engine = CountingEngine(tokenizer)
    jobs = [_job(catalog, "unrelated words")]
    [scored] = await score_jobs(engine, jobs, "dead_letter", 0, None, _banks(tmp_path))
    assert len(engine.requests) == 3  # fruit, tools and the shadow
    assert scored.job.decided == {} and len(scored.shadow_scores) == 1
    assert all(v.source == "model" for v in build_verdict(scored, "m", SOURCE).verdicts)


def _item(kind: str, data: bytes, wanted=frozenset({PDQ, VIDEO_MD5})) -> FetchedMedia:
    """A fetched item as the media step makes it: decoded, then hashed."""
    frames = decode(kind, data, MediaSettings()).frames
    return FetchedMedia(
        kind=kind,  # type: ignore[arg-type]
        where="media[0]",
        data=data,
        sha256=FetchedMedia.digest(data),
        frames=frames,
        signals=media_signals(kind, data, frames, wanted),
    )


def _media_banks(directory: Path):
    (directory / "removed.yaml").write_text("policies: [fruit]\nlabel: 1\n")
    original, video = image_pdq(samples.picture())[0], samples.video([(255, 255, 255)])
    (directory / "removed.txt").write_text(
        f"pdq {original}\nvideo_md5 {hashlib.md5(video).hexdigest()}\n"
    )
    (directory / "memes.yaml").write_text("policies: [fruit, tools]\nlabel: 0\n")
    meme = image_pdq(samples.picture(seed=5))[0]
    (directory / "memes.txt").write_text(f"pdq {meme}\nraw_text a famous meme\n")
    return load_banks(directory, 31), video


def _media_job(catalog, items: list[FetchedMedia], content: str | None = None, n: int = 0) -> Job:
    refs = [MediaRef(type=item.kind, data="AA==") for item in items]
    event = ContentEvent(id=f"i{n}", content=content, media=refs)
    job = Job(
        event, catalog.resolve(["fruit", "tools"]), shadows=((0, catalog.entries["fruit-draft"]),)
    )
    job.media = items
    return job


def _decided(job: Job) -> dict:
    """Per decided policy: label, bank, signal type and distance (an int, as verdicts carry)."""
    found = {p: (d.label, d.match.bank.name, d.match.signal_type, d.match.distance)
             for p, d in job.decided.items()}  # fmt: skip
    assert all(type(where[3]) is int for where in found.values()), found
    return found


def test_images_and_video_are_matched_by_their_signals(catalog, tmp_path):
    banks, video = _media_banks(tmp_path)
    near = image_pdq(samples.picture(box=8))[0]
    distance = int.bit_count(int(near, 16) ^ int(image_pdq(samples.picture())[0], 16))
    jobs = [
        _media_job(catalog, [_item("image", samples.picture())], n=0),
        _media_job(catalog, [_item("image", samples.picture(box=8, fmt="JPEG"))], n=1),
        _media_job(catalog, [_item("image", samples.picture(box=96))], n=2),
        _media_job(catalog, [_item("video", video)], n=3),
        _media_job(catalog, [_item("image", samples.picture(), wanted=frozenset())], n=4),
    ]
    hash_pass(banks, jobs)
    assert 0 < distance <= 31
    assert [_decided(job) for job in jobs] == [
        {"fruit": (1, "removed", "pdq", 0)},
        {"fruit": (1, "removed", "pdq", distance)},
        {},  # beyond the distance
        {"fruit": (1, "removed", "video_md5", 0)},
        {},  # hashed for no type: matched by nothing
    ]
    assert jobs[0].shadows == () and len(jobs[2].shadows) == 1


def test_known_good_media_decides_only_with_every_part_known_good(catalog, tmp_path):
    banks, video = _media_banks(tmp_path)
    meme = _item("image", samples.picture(seed=5))
    jobs = [
        _media_job(catalog, [meme], n=0),
        _media_job(catalog, [meme], "a new caption", n=1),
        _media_job(catalog, [meme], "a famous meme", n=2),
        _media_job(catalog, [meme, _item("image", samples.picture(seed=9))], n=3),
        _media_job(catalog, [meme, _item("video", video)], "a famous meme", n=4),
    ]
    hash_pass(banks, jobs)
    good = {"fruit": (0, "memes", "pdq", 0), "tools": (0, "memes", "pdq", 0)}
    assert [_decided(job) for job in jobs] == [
        good,
        {},  # the caption is not known: the model sees the whole event
        good,  # the nearest match is named: exact ones are at 0 too, then by type
        {},  # nor is the second picture
        # Known bad wins; tools: the video is known for fruit alone, so the model decides.
        {"fruit": (1, "removed", "video_md5", 0)},
    ]
    assert {(m.bank.name, m.signal_type) for m in jobs[4].matches} == {
        ("memes", "pdq"), ("memes", "raw_text"), ("removed", "video_md5"),
    }  # fmt: skip


async def test_policies_a_media_match_decides_never_reach_the_engine(tokenizer, catalog, tmp_path):
    engine = CountingEngine(tokenizer)
    banks, _ = _media_banks(tmp_path)
    job = _media_job(catalog, [_item("image", samples.picture())], "a caption")
    # The double takes no media: a request for the undecided policy fails as a job error.
    [scored] = await score_jobs(engine, [job], "dead_letter", 0, None, banks)
    assert engine.requests == [] and job.decided["fruit"].label == 1
    assert scored.error is not None and "does not take images" in scored.error.reason
