"""Which URLs and addresses may be fetched: the SSRF guard, with no connection ever made."""

from __future__ import annotations

import pytest

from worker.config import MediaSettings
from worker.media.fetch import download
from worker.media.guard import check_addresses, check_url
from worker.media.refs import MediaRejected

CDN = MediaSettings(allowed_hosts=["cdn.example.com", "*.img.example.com"])


def rule_of(call) -> str:
    with pytest.raises(MediaRejected) as caught:
        call()
    return caught.value.rule


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://cdn.example.com/a.png", "scheme_not_allowed"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("ftp://cdn.example.com/a.png", "scheme_not_allowed"),
        ("https://evil.example.org/a.png", "host_not_allowed"),
        ("https://img.example.com/a.png", "host_not_allowed"),  # the pattern wants a subdomain
        ("https://cdn.example.com.evil.org/a.png", "host_not_allowed"),
        ("https://user:pw@cdn.example.com/a.png", "bad_url"),
        ("https:///a.png", "bad_url"),
        ("https://cdn.example.com:99999/a.png", "bad_url"),
    ],
)
def test_urls_refused(url: str, rule: str) -> None:
    assert rule_of(lambda: check_url(url, CDN)) == rule


def test_urls_allowed() -> None:
    assert check_url("https://cdn.example.com/a.png", CDN).port == 443
    assert check_url("https://CDN.example.com./a.png", CDN).host == "cdn.example.com"
    assert check_url("https://a.img.example.com:8443/x", CDN).port == 8443


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "::1", "10.0.0.1", "172.16.5.4", "192.168.1.1",
        "169.254.169.254", "169.254.1.1", "fe80::1", "fd00:ec2::254", "fc00::1",
        "::ffff:10.0.0.1", "::ffff:127.0.0.1", "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1",
    ],
)  # fmt: skip
def test_private_addresses_refused(address: str) -> None:
    assert rule_of(lambda: check_addresses("h", [address], CDN)) == "address_not_allowed"
    # One bad address among good ones is enough: the connection could pick any of them.
    assert rule_of(lambda: check_addresses("h", ["93.184.216.34", address], CDN)) == (
        "address_not_allowed"
    )


def test_public_addresses_pass_and_loopback_only_when_allowed() -> None:
    check_addresses("h", ["93.184.216.34", "2606:2800:220:1::1"], CDN)
    loopback = MediaSettings(allow_loopback=True)
    check_addresses("h", ["127.0.0.1", "::1"], loopback)
    assert rule_of(lambda: check_addresses("h", ["10.0.0.1"], loopback)) == "address_not_allowed"
    private = MediaSettings(allow_private=True)
    check_addresses("h", ["10.0.0.1", "192.168.0.2"], private)
    # Metadata services stay refused even where private ranges are allowed.
    assert rule_of(lambda: check_addresses("h", ["169.254.169.254"], private)) == (
        "address_not_allowed"
    )


def failing_transport(*args, **kwargs):
    pytest.fail("a connection was attempted to a refused address")


@pytest.mark.parametrize("answer", [["10.1.2.3"], ["169.254.169.254"], ["8.8.8.8", "127.0.0.1"]])
async def test_download_never_connects_to_a_refused_address(answer: list[str]) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        assert (host, port) == ("cdn.example.com", 443)
        return answer

    with pytest.raises(MediaRejected) as caught:
        await download("https://cdn.example.com/a.png", CDN, 1000, resolver, failing_transport)
    assert caught.value.rule == "address_not_allowed"


async def test_download_checks_the_url_before_resolving() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        pytest.fail("a refused host was resolved")

    with pytest.raises(MediaRejected) as caught:
        await download("https://evil.org/a.png", CDN, 1000, resolver, failing_transport)
    assert caught.value.rule == "host_not_allowed"
