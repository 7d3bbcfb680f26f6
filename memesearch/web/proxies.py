"""Who is asking and where they think they are: client address, scheme and origin of a request.

``X-Forwarded-For/-Proto/-Host`` are believed only when the direct peer is one of
``MEMESEARCH_TRUSTED_PROXIES``; anyone else could send them to pose as another client
(dodging the login throttle) or to make a plain-http request look like https.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

DEFAULT_PORTS = {"http": 80, "https": 443}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: list[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:  # e.g. Starlette's TestClient peer "testclient", or a garbage header
        return False
    return any(ip in network for network in networks)


def _first(value: str) -> str:
    return value.split(",")[0].strip()


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Origin | None:
        """The origin of ``url`` ("https://host:port/..."), or None when it has none ("null", junk)."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            return None
        return cls(scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme])


@dataclass(frozen=True)
class RequestView:
    """A request as seen behind the trusted proxies."""

    client: str
    scheme: str
    host: str  # the Host header (or X-Forwarded-Host), "name[:port]"

    @property
    def https(self) -> bool:
        return self.scheme == "https"

    @property
    def origin(self) -> Origin | None:
        return Origin.parse(f"{self.scheme}://{self.host}")


def view_of(request: Request, trusted: tuple[Network, ...]) -> RequestView:
    peer = request.client.host if request.client else ""
    scheme, host = request.url.scheme, request.headers.get("host", "")
    if scheme == "ws":
        scheme = "http"
    elif scheme == "wss":
        scheme = "https"
    if not trusted or not _is_trusted(peer, trusted):
        return RequestView(peer, scheme, host)
    proto = _first(request.headers.get("x-forwarded-proto", "")).lower()
    if proto in DEFAULT_PORTS:
        scheme = proto
    host = _first(request.headers.get("x-forwarded-host", "")) or host
    # X-Forwarded-For lists every hop; the client is the last address no trusted proxy added.
    client = peer
    hops = [hop.strip() for hop in request.headers.get("x-forwarded-for", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        client = hop
        if not _is_trusted(hop, trusted):
            break
    return RequestView(client, scheme, host)
