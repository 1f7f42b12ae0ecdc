"""Which server of engine.url a request goes to, when one out of reach is probed, and when
the worker is not ready."""

from __future__ import annotations

from collections import Counter

from worker.engine.fleet import Endpoints


def test_requests_take_the_servers_in_turn():
    endpoints = Endpoints(["http://a", "http://b", "http://c"])
    assert [endpoints.pick().url for _ in range(6)] == ["http://a", "http://b", "http://c"] * 2
    assert endpoints.unready is None


def test_servers_out_of_reach_are_skipped_while_another_answers():
    endpoints = Endpoints(["http://a", "http://b", "http://c"])
    assert endpoints.mark_down(endpoints.all[1], "b refused", now=0)
    assert {endpoints.pick().url for _ in range(6)} == {"http://a", "http://c"}
    assert endpoints.unready is None


def test_all_out_of_reach_is_not_ready_and_each_is_tried_again():
    endpoints = Endpoints(["http://a", "http://b"])
    endpoints.mark_down(endpoints.all[0], "a refused", now=0)
    endpoints.mark_down(endpoints.all[1], "b reset", now=0)
    assert endpoints.unready == "a refused; b reset"
    assert {endpoints.pick().url for _ in range(4)} == {"http://a", "http://b"}
    endpoints.mark_up(endpoints.all[0])
    assert endpoints.unready is None
    assert {endpoints.pick().url for _ in range(4)} == {"http://a"}


def test_a_server_marked_down_is_probed_on_a_growing_schedule_up_to_the_cap():
    endpoints = Endpoints(["http://a", "http://b"], backoff_max_s=2.0)
    b = endpoints.all[1]
    assert endpoints.mark_down(b, "b refused", now=100.0)
    # Marked down again by another failed request: no second prober, the schedule stands.
    assert not endpoints.mark_down(b, "b refused again", now=100.001)
    assert b.down == "b refused again"
    times, now = [], 100.0
    while len(times) < 6:
        wait = endpoints.probe_due(b, now=now)
        if wait == 0:
            times.append(now)
        now = round(now + 0.01, 2)
    gaps = [later - earlier for earlier, later in zip([100.0, *times], times, strict=False)]
    # Jittered steps (half to all of 0.5, 1, 2, then the cap of 2 s): growing, then capped.
    steps = [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    for gap, step in zip(gaps, steps, strict=True):
        assert step / 2 - 0.02 <= gap <= step + 0.02, (gaps, steps)


def test_a_server_that_answers_a_probe_gets_its_share_of_traffic_again():
    endpoints = Endpoints(["http://a", "http://b"])
    endpoints.mark_down(endpoints.all[1], "b refused", now=0)
    assert Counter(endpoints.pick().url for _ in range(40)) == {"http://a": 40}
    assert endpoints.mark_up(endpoints.all[1])
    assert endpoints.probe_due(endpoints.all[1], now=1) is None  # up: nothing to probe
    assert Counter(endpoints.pick().url for _ in range(40)) == {"http://a": 20, "http://b": 20}
    assert not endpoints.mark_up(endpoints.all[1])


def test_a_server_down_again_starts_its_schedule_afresh():
    endpoints = Endpoints(["http://a", "http://b"], backoff_max_s=8.0)
    b = endpoints.all[1]
    endpoints.mark_down(b, "down", now=0)
    assert endpoints.probe_due(b, now=0.5) == 0
    assert endpoints.probe_due(b, now=1.5) == 0  # the second step is at most 1 s
    assert endpoints.probe_due(b, now=1.5 + 2.0) == 0  # the third at most 2 s
    endpoints.mark_up(b)
    assert endpoints.mark_down(b, "down again", now=50)
    assert endpoints.probe_due(b, now=50.5) == 0  # afresh: the first step again
