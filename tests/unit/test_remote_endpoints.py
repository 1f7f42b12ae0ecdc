"""Which server of engine.url a request goes to, and when the worker is not ready."""

from __future__ import annotations

from worker.engine.remote import Endpoints


def test_requests_take_the_servers_in_turn():
    endpoints = Endpoints(["http://a", "http://b", "http://c"])
    assert [endpoints.pick().url for _ in range(6)] == ["http://a", "http://b", "http://c"] * 2
    assert endpoints.unready is None


def test_servers_out_of_reach_are_skipped_while_another_answers():
    endpoints = Endpoints(["http://a", "http://b", "http://c"])
    endpoints.all[1].down = "b refused"
    assert {endpoints.pick().url for _ in range(6)} == {"http://a", "http://c"}
    assert endpoints.unready is None


def test_all_out_of_reach_is_not_ready_and_each_is_tried_again():
    endpoints = Endpoints(["http://a", "http://b"])
    endpoints.all[0].down = "a refused"
    endpoints.all[1].down = "b reset"
    assert endpoints.unready == "a refused; b reset"
    assert {endpoints.pick().url for _ in range(4)} == {"http://a", "http://b"}
    endpoints.all[0].down = None
    assert endpoints.unready is None
    assert {endpoints.pick().url for _ in range(4)} == {"http://a"}
