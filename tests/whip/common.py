"""What the WHIP publisher and the WHEP viewer share: the HTTP exchange and loopback-only ICE."""

import urllib.error
import urllib.request

import aioice.ice


def http(method, url, body=None, token=None):
    """One request (an SDP body, if any); returns (status, headers, body text)."""
    headers = {"Content-Type": "application/sdp"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def gather_on_loopback_only():
    """Makes aiortc offer 127.0.0.1 as its only host candidate. aioice leaves loopback out and
    gathers every other interface; a test server announcing 127.0.0.1 would then answer checks
    from a machine address (the kernel's choice for a reply to one), which aioice refuses as a
    source address mismatch."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
