"""Which addresses an app server may listen on or be reached at: private unicast only.

The app server's protocols (uwsgi, and gunicorn's HTTP behind nginx) have no
authentication: whoever reaches the port is trusted like nginx. So a TCP address is
only ever a private one of this host's networks, which the firewall limits to the fronts.
"""

from __future__ import annotations

import ipaddress

from .errors import DeployError

PRIVATE_RULE = "a unicast address of a private network (10/8, 172.16/12, 192.168/16, fc00::/7) that this host has"


def private_address(address: str, what: str) -> str:
    """A unicast address of a private network, normalised (IPv4-mapped IPv6 becomes IPv4),
    or a DeployError naming the value and the rule. The app server's protocols (uwsgi, or
    gunicorn's HTTP behind nginx) have no authentication: every other address is refused."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        raise DeployError(f"{what} {address!r} is not an IP address: it must be {PRIVATE_RULE}") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:0.0.0.0 is 0.0.0.0: judged as what it reaches
    problem = (
        "the unspecified address (every address of the host)"
        if ip.is_unspecified
        else "a loopback address: this host's nginx reaches the app server on its unix socket"
        if ip.is_loopback
        else "a multicast address"
        if ip.is_multicast
        else "a link-local address"
        if ip.is_link_local
        else "a reserved address"
        if ip.is_reserved
        else "a public address"
        if not ip.is_private
        else ""
    )
    if problem:
        raise DeployError(f"{what} {address} is {problem}: it must be {PRIVATE_RULE}")
    return str(ip)


def url_host(address: str) -> str:
    """An address as the host of a URL or of host:port: an IPv6 one in brackets."""
    return f"[{address}]" if ":" in address else address
