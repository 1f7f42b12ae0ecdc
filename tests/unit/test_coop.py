"""The Coop adapter's pure parts, and its start-up checks as a user meets them."""

import base64
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from worker.config import CoopSettings
from worker.coop.actions import (
    IGNORE_REVIEWER,
    BadCallback,
    decisions_from_action,
    decisions_from_ignore,
)
from worker.coop.reports import NotAReviewRecord, Report, Reported, ReportedIndex, reports_for
from worker.coop.signature import load_public_key, signature_ok

NOW = datetime(2026, 11, 23, tzinfo=UTC)
COOP = CoopSettings(policies={"fruit": "coop-fruit"}, decisions={"remove": 1, "approve": 0})


def test_policy_ids_map_both_ways_and_unmapped_ids_pass_through():
    assert COOP.coop_policy("fruit") == "coop-fruit" and COOP.coop_policy("nature") == "nature"
    assert COOP.our_policy("coop-fruit") == "fruit" and COOP.our_policy("nature") == "nature"
    assert COOP.our_policy("fruit") is None  # our id for a mapped policy is not Coop's


def _action(item: str, action: str, policies: list, **extra) -> dict:
    body = {"item": {"id": item, "typeId": "post", "typeName": "Post"}, "action": {"id": action}}
    return body | {"policies": policies, "rules": [], "custom": {}} | extra


def test_a_callback_without_policies_decides_what_was_reported():
    index = ReportedIndex()
    index.add("a", "fruit", Reported("v1", "review_band"))
    payload = _action("a", "approve", [], actorEmail="mod@example.org")
    outcome = decisions_from_action(payload, COOP, index, NOW)
    assert outcome.refused is None and outcome.automated is None
    (decision,) = outcome.decisions
    assert (decision.policy, decision.decision, decision.reviewer) == (
        "fruit",
        0,
        "mod@example.org",
    )
    assert (decision.policy_version, decision.origin) == ("v1", "review_band")


def test_callbacks_that_carry_no_decision_say_why():
    index = ReportedIndex()
    who = {"actorEmail": "mod@example.org"}
    unmapped = _action("a", "ban", [{"id": "coop-fruit"}], **who)
    assert "not mapped" in decisions_from_action(unmapped, COOP, index, NOW).refused
    unknown = _action("a", "remove", [], **who)
    assert "no known policy" in decisions_from_action(unknown, COOP, index, NOW).refused
    with pytest.raises(BadCallback):
        decisions_from_action({"item": {}}, COOP, index, NOW)
    with pytest.raises(BadCallback):
        decisions_from_action(_action("a", "remove", [], actorEmail=["x"]), COOP, index, NOW)


def test_rule_and_strike_triggered_actions_are_no_decisions():
    index = ReportedIndex()
    index.add("a", "fruit", Reported("v1", "audit_sample"))
    rules = [{"id": "r-1", "name": "Spam detector"}]
    by_rule = decisions_from_action(
        _action("a", "remove", [{"id": "coop-fruit"}], rules=rules), COOP, index, NOW
    )
    assert by_rule.decisions == [] and "Spam detector" in by_rule.automated
    by_strikes = decisions_from_action(_action("a", "remove", []), COOP, index, NOW)
    assert by_strikes.decisions == [] and "user-strike" in by_strikes.automated
    # An unmapped action triggered by a rule is just as automated: acknowledged, not refused.
    ban = decisions_from_action(_action("a", "ban", [], rules=rules), COOP, index, NOW)
    assert ban.automated and ban.refused is None


def test_ignore_is_a_zero_for_each_reported_policy_still_awaiting_a_decision():
    index = ReportedIndex()
    for policy in ("fruit", "nature"):
        index.add("a", policy, Reported(f"{policy}-v1", "audit_sample"))
    ignore = {"id": "a", "typeId": "post", "data": {"text": "hello"}}
    outcome = decisions_from_ignore(ignore, index, NOW)
    assert [(d.policy, d.decision) for d in outcome.decisions] == [("fruit", 0), ("nature", 0)]
    assert {d.reviewer for d in outcome.decisions} == {IGNORE_REVIEWER}
    assert outcome.decisions[0].policy_version == "fruit-v1"
    # fruit was decided by an action meanwhile: Ignore closes only what is left.
    index.decided("a", "fruit")
    assert [d.policy for d in decisions_from_ignore(ignore, index, NOW).decisions] == ["nature"]
    index.decided("a", "nature")  # all decided: a second review re-decides them all
    assert len(decisions_from_ignore(ignore, index, NOW).decisions) == 2
    index.add("a", "fruit", Reported("fruit-v2", "review_band"))  # reported again: open again
    assert [d.policy for d in decisions_from_ignore(ignore, index, NOW).decisions] == ["fruit"]


def test_an_ignore_for_an_item_never_reported_or_off_contract_is_refused():
    index = ReportedIndex()
    unknown = decisions_from_ignore({"id": "zz", "typeId": "post", "data": {}}, index, NOW)
    assert unknown.decisions == [] and "no report of the item" in unknown.refused
    for body in ({"typeId": "post"}, {"id": 3, "typeId": "post"}, [1]):
        with pytest.raises(BadCallback):
            decisions_from_ignore(body, index, NOW)


def test_a_record_that_is_not_a_review_record_is_refused():
    with pytest.raises(NotAReviewRecord):
        reports_for({"id": "a"}, COOP)
    with pytest.raises(NotAReviewRecord):
        reports_for([1, 2], COOP)


def test_the_index_forgets_the_oldest_reports_first():
    index = ReportedIndex(size=2)
    for item in "abc":
        index.add(item, "fruit", Reported("v", "review_band"))
    assert index.get("a", "fruit") is None and index.get("c", "fruit") is not None
    assert index.policies_of("a") == [] and index.policies_of("c") == ["fruit"]


def test_signatures_verify_only_the_exact_body_under_the_right_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = load_public_key(pem)
    body = b'{"item": {"id": "a"}}'
    good = base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()
    assert signature_ok(public, body, good)
    assert not signature_ok(public, body + b"\n", good)
    assert not signature_ok(public, body, None) and not signature_ok(public, body, "%%%")


def test_missing_settings_stop_the_adapter_with_one_line_naming_them(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    steps = [
        ({}, "coop.url is required"),
        ({"WORKER_COOP__URL": "http://coop"}, "coop.api_key or coop.api_key_file"),
        ({"WORKER_COOP__API_KEY": "k"}, "coop.public_key_file is required"),
        ({"WORKER_COOP__PUBLIC_KEY_FILE": str(tmp_path / "none.pem")}, "coop.decisions is empty"),
        ({"WORKER_COOP__DECISIONS": '{"remove": 1}'}, "none.pem"),
        ({"WORKER_COOP__DECISIONS": '{"remove": 2}'}, "coop.decisions.remove"),
    ]
    for extra, message in steps:
        env |= extra
        result = subprocess.run(
            [sys.executable, "-m", "worker.cli", "coop"],
            capture_output=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        stderr = result.stderr.decode()
        assert result.returncode != 0 and message in stderr, stderr
        assert "Traceback" not in stderr


def test_a_bank_decision_under_review_is_reported_with_its_match():
    record = {
        "id": "a",
        "origin": "review_band",
        "classified_at": "2026-11-23T00:00:00Z",
        "metadata": {},
        "verdicts": [
            {
                "policy": "fruit",
                "policy_version": "v1",
                "label": 1,
                "score": None,
                "confidence": None,
                "source": "hash_match",
                "match": {"bank": "removed", "signal_type": "pdq", "distance": 7},
            },
        ],  # fmt: skip
    }
    [report] = reports_for(record, COOP)
    reason = report.body["reportedForReason"]["reason"]
    assert reason == (
        "moderation-worker hash bank review: policy fruit, label 1 from hash bank removed "
        "(pdq, distance 7)"
    )


class _Answers:
    """A local HTTP endpoint answering Coop's report path with a script of statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses, self.calls = statuses, 0

    async def handle(self, request):
        from aiohttp import web

        status = self.statuses[min(self.calls, len(self.statuses) - 1)]
        self.calls += 1
        return web.json_response({"reportId": "r"} if status < 300 else {}, status=status)


async def _post_with(statuses: list[int], retry_s: float = 5.0) -> _Answers:
    import aiohttp
    from aiohttp import web

    from worker.config import load_settings
    from worker.coop.adapter import REPORT_PATH, post_report

    answers = _Answers(statuses)
    app = web.Application()
    app.router.add_post(REPORT_PATH, answers.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    settings = load_settings(
        kafka={"connect_retry_s": retry_s, "connect_backoff_max_s": 0.05},
        coop={"url": f"http://127.0.0.1:{port}", "api_key": "k"},
    )
    report = Report("a", "fruit", Reported("v1", "review_band"), {"reportedItem": {"id": "a"}})
    try:
        async with aiohttp.ClientSession() as session:
            await post_report(session, settings, report)
    finally:
        await runner.cleanup()
    return answers


async def test_a_report_is_retried_through_busy_answers_until_coop_takes_it():
    answers = await _post_with([503, 429, 201])
    assert answers.calls == 3


async def test_refused_keys_and_items_end_at_once_and_a_busy_coop_ends_after_the_budget():
    from worker.coop.adapter import CoopFatal, CoopRefused

    with pytest.raises(CoopFatal, match="check coop.api_key"):
        await _post_with([401])
    with pytest.raises(CoopRefused, match="400"):
        await _post_with([400])
    with pytest.raises(CoopFatal, match="still failing after retries: Coop answered 500"):
        await _post_with([500], retry_s=0.2)
