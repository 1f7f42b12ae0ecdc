"""Which URLs and addresses may be fetched: pure checks, each failure naming its rule.

A URL passes when its scheme and host are allowed by configuration. The addresses its
host resolves to pass when none is loopback, private, link-local, multicast, reserved or a
cloud metadata address, unless configuration allows loopback or private ranges. Every
address must pass, not just one: the connection is then pinned to the checked addresses,
so a second lookup cannot answer differently.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import MediaSettings
from .refs import MediaRejected

# Cloud metadata services, refused even where private ranges are allowed.
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254")
)
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int


def check_url(url: str, settings: MediaSettings) -> Target:
    """The URL's parts when its scheme and host are allowed; MediaRejected otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise MediaRejected("bad_url", f"{url!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in {s.lower() for s in settings.allowed_schemes}:
        raise MediaRejected("scheme_not_allowed", f"scheme {scheme!r} of {url} is not allowed")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise MediaRejected("bad_url", f"{url} has no host")
    if parts.username is not None or parts.password is not None:
        raise MediaRejected("bad_url", f"{url} carries credentials")
    if not any(fnmatch.fnmatchcase(host, p.lower()) for p in settings.allowed_hosts):
        raise MediaRejected("host_not_allowed", f"host {host!r} is not in media.allowed_hosts")
    return Target(url, scheme, host, port or DEFAULT_PORTS.get(scheme, 443))


def check_addresses(host: str, addresses: list[str], settings: MediaSettings) -> None:
    """Refuse the host when any address it resolved to is one we never fetch from."""
    if not addresses:
        raise MediaRejected("address_not_allowed", f"host {host!r} resolved to no address")
    for text in addresses:
        if (why := refused_because(ipaddress.ip_address(text), settings)) is not None:
            raise MediaRejected(
                "address_not_allowed", f"host {host!r} resolves to {text}, a {why} address"
            )


def refused_because(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, settings: MediaSettings
) -> str | None:
    """Why ``ip`` may not be fetched from (a word for the reason), or None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    if ip in METADATA:
        return "metadata"
    if ip.is_loopback:
        return None if settings.allow_loopback else "loopback"
    if ip.is_link_local:
        return None if settings.allow_private else "link-local"
    if ip.is_private or ip.is_reserved or ip.is_unspecified or ip.is_multicast:
        return None if settings.allow_private and ip.is_private else "private or reserved"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return None if settings.allow_private else "private or reserved"
    return None


_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not global, not "private"
