"""HTTP requests to URLs that users give us (buyers' webhooks), without SSRF.

The host is resolved once. Unless private addresses are allowed, every address it
resolves to must be public, and the request goes to exactly those addresses: no
second lookup that a rebinding DNS server could answer with 127.0.0.1. The Host
header, TLS SNI and the certificate check still name the host. Redirects are not
followed, and proxies from the environment are not used (a proxy would resolve the
name again itself).

Connections are kept alive and reused per host name (`_adapter`): each host's pool
holds connections to the addresses that name resolved to, keyed by address and port,
with TLS for that name, so a reused connection goes exactly where a new one would."""
import ipaddress
import os
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, HTTPError, ReadTimeoutError

# IETF protocol assignments; Python before 3.11.10 and 3.12.4 calls them global.
_PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")
# NAT64: a gateway forwards these to the IPv4 address in their last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# How much of a reply is read: enough for any CRM's verdict, bounded against floods.
REPLY_LIMIT = 64 * 1024
HOSTS_KEPT = 256  # host names whose idle connections are kept (least recently used go)
CONNECTIONS_KEPT = 32  # idle connections kept per address of a host


class Refused(Exception):
    """The URL may not be requested; the message is a sentence saying why, for the buyer."""


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes  # at most REPLY_LIMIT bytes


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        # An IPv4 address carried in IPv6 (::ffff:127.0.0.1, 6to4, NAT64) is judged as itself.
        embedded = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not (ip.is_multicast or ip.is_reserved
                                 or ip in _PROTOCOL_ASSIGNMENTS)


def resolve(host: str, port: int, allow_private: bool) -> list[str]:
    """The host's addresses, looked up once; Refused if any is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise Refused(f"the address {host} could not be found") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise Refused(f"the address {host} could not be found")
    for address in addresses:
        if not allow_private and not is_public(address):
            subject = host if address == host else f"{host} resolves to {address}, which"
            raise Refused(f"refused: {subject} is not a public address, and leads are "
                          "delivered only to public addresses")
    return addresses


class _PinnedAdapter(HTTPAdapter):
    """Connects to the IP address in the request's URL; TLS (SNI, certificate) for host."""

    def __init__(self, host: str):
        self.host = host
        super().__init__(max_retries=0, pool_connections=8, pool_maxsize=CONNECTIONS_KEPT)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, server_hostname=self.host, **kwargs)


_adapters: OrderedDict = OrderedDict()  # (process id, host) -> its _PinnedAdapter
_adapters_lock = threading.Lock()


def _adapter(host: str) -> _PinnedAdapter:
    """The host's adapter with its kept-alive connections: a fresh TCP (and TLS)
    connection per webhook cost the sender and the buyer more than the request."""
    key = (os.getpid(), host)  # a forked process opens its own connections
    with _adapters_lock:
        adapter = _adapters.pop(key, None) or _PinnedAdapter(host)
        _adapters[key] = adapter
        evicted = _adapters.popitem(last=False)[1] if len(_adapters) > HOSTS_KEPT else None
    if evicted is not None:
        evicted.close()
    return adapter


def _never_connected(exc: requests.ConnectionError) -> bool:
    return isinstance(getattr(exc.args[0] if exc.args else None, "reason", None),
                      ConnectTimeoutError)


def post(url: str, *, data: bytes, headers: dict, timeout: float,
         allow_private: bool) -> Reply:
    """POST to url and return the reply (its first REPLY_LIMIT bytes). Raises Refused,
    or requests.RequestException when the request fails."""
    request = requests.Request("POST", url, data=data, headers=headers).prepare()
    parts = urlsplit(request.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("refused: the URL does not start with http:// or https://")
    port = parts.port if parts.port is not None else (443 if parts.scheme == "https" else 80)
    addresses = resolve(parts.hostname, port, allow_private)
    request.headers["Host"] = parts.netloc.rpartition("@")[2]
    # A CA bundle named in the environment, as requests itself would honour.
    verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    adapter = _adapter(parts.hostname)
    for address in addresses:
        literal = f"[{address.replace('%', '%25')}]" if ":" in address else address
        request.url = urlunsplit(parts._replace(netloc=f"{literal}:{port}"))
        try:
            response = adapter.send(request, stream=True, timeout=timeout, verify=verify)
        except requests.ConnectionError as exc:
            # The next address only when nothing was sent to this one.
            if address == addresses[-1] or not _never_connected(exc):
                raise
            continue
        try:
            body = response.raw.read(REPLY_LIMIT, decode_content=True)
        # Raised by urllib3 itself while reading: told as the requests errors they are.
        except ReadTimeoutError as exc:
            raise requests.ReadTimeout(exc) from None
        except HTTPError as exc:
            raise requests.ConnectionError(exc) from None
        finally:
            # A reply read to its end went back to the pool already; one longer
            # than REPLY_LIMIT (or cut short) closes its connection here.
            response.close()
        return Reply(response.status_code, response.headers.get("Content-Type", ""), body)
