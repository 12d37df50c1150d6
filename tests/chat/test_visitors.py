"""Which address counts for rate limits: a forged X-Forwarded-For must change nothing."""

from __future__ import annotations

import pytest

from chat.limits.visitors import TrustedProxies


def test_without_trusted_proxies_the_peer_is_the_visitor_whatever_the_header_says():
    nobody = TrustedProxies.parse("")
    assert nobody.client_address("203.0.113.9", "1.2.3.4") == "203.0.113.9"
    assert nobody.client_address("127.0.0.1", "1.2.3.4, 5.6.7.8") == "127.0.0.1"


def test_behind_trusted_proxies_the_right_most_untrusted_hop_is_the_visitor():
    proxies = TrustedProxies.parse("10.0.0.0/8, 127.0.0.1")
    # nginx (127.0.0.1) appended what it saw; the client forged the first value.
    assert proxies.client_address("127.0.0.1", "6.6.6.6, 203.0.113.7") == "203.0.113.7"
    # Two of our proxies in a row (a load balancer, then nginx).
    assert proxies.client_address("127.0.0.1", "6.6.6.6, 203.0.113.7, 10.1.2.3") == "203.0.113.7"
    assert proxies.client_address("127.0.0.1", None) == "127.0.0.1"
    assert proxies.client_address("127.0.0.1", "10.0.0.1") == "10.0.0.1"  # all ours: the first hop
    assert proxies.client_address("198.51.100.1", "6.6.6.6") == "198.51.100.1"  # not our proxy


def test_ipv6_and_bad_entries():
    proxies = TrustedProxies.parse("::1, fc00::/7")
    assert proxies.client_address("::1", "2001:db8::5") == "2001:db8::5"
    assert not proxies.trusts("not-an-ip")
    with pytest.raises(ValueError, match="RETOUCH_TRUSTED_PROXIES"):
        TrustedProxies.parse("10.0.0.0/8, proxy.example")


def test_on_spaces_its_private_networks_are_trusted_unless_configured():
    spaces = TrustedProxies.for_environment(None, {"SYSTEM": "spaces"})
    assert spaces.client_address("10.16.4.2", "6.6.6.6, 203.0.113.7") == "203.0.113.7"
    assert TrustedProxies.for_environment("", {"SYSTEM": "spaces"}).client_address(
        "10.16.4.2", "1.1.1.1"
    ) == ("10.16.4.2")
    assert TrustedProxies.for_environment(None, {}).client_address("10.16.4.2", "1.1.1.1") == "10.16.4.2"
