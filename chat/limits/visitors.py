"""Which address a request came from, for rate limits that rotating a header cannot reset.

``X-Forwarded-For`` is written by whoever sent the request, so its first value is whatever a
client wants it to be. It is believed only when the direct peer is a proxy we trust
(``RETOUCH_TRUSTED_PROXIES``), and then only from the right: each trusted proxy appends the
address it received the request from, so the right-most hop that is not one of ours is the
client. Without trusted proxies the direct peer is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

__all__ = ["SPACES_PROXIES", "TrustedProxies"]

#: Hugging Face Spaces reach the container through their own proxy, on private networks.
SPACES_PROXIES = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,127.0.0.0/8,fc00::/7,::1/128"

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, networks: Iterable[_Network] = ()) -> None:
        self._networks = tuple(networks)

    @classmethod
    def parse(cls, spec: str | None) -> TrustedProxies:
        """``"10.0.0.5, 172.16.0.0/12"``; a bad entry is a startup error, never silently ignored."""
        networks = []
        for item in (spec or "").split(","):
            if item.strip():
                try:
                    networks.append(ipaddress.ip_network(item.strip(), strict=False))
                except ValueError as exc:
                    raise ValueError(f"RETOUCH_TRUSTED_PROXIES: {item.strip()!r} is not an address") from exc
        return cls(networks)

    @classmethod
    def for_environment(cls, spec: str | None, environ: Mapping[str, str]) -> TrustedProxies:
        """As configured; unset on Spaces, its private networks; unset elsewhere, nobody."""
        if spec is None and environ.get("SYSTEM") == "spaces":
            spec = SPACES_PROXIES
        return cls.parse(spec)

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def client_address(self, peer: str, forwarded_for: str | None) -> str:
        """The visitor's address: the peer, or the right-most untrusted hop a trusted peer forwarded."""
        if not self.trusts(peer):
            return peer
        hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else peer
