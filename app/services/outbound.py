"""HTTP requests to URLs that users give us (buyers' webhooks), without SSRF.

The host is resolved once. Unless private addresses are allowed, every address it
resolves to must be public, and the request goes to exactly those addresses: no
second lookup that a rebinding DNS server could answer with 127.0.0.1. The Host
header, TLS SNI and the certificate check still name the host. Redirects are not
followed, and proxies from the environment are not used (a proxy would resolve the
name again itself).

Connections are kept alive and reused per host name (`_pools`): each host's pool
holds connections to the addresses that name resolved to, keyed by address and port,
with TLS for that name, so a reused connection goes exactly where a new one would."""
import ipaddress
import os
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass

import requests
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3 import PoolManager, Timeout
from urllib3.exceptions import (
    ConnectTimeoutError, HTTPError, LocationParseError, NewConnectionError, ReadTimeoutError,
    SSLError,
)
from urllib3.util import parse_url

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


_managers: OrderedDict = OrderedDict()  # (process id, host) -> its PoolManager
_managers_lock = threading.Lock()


def _pools(host: str) -> PoolManager:
    """The host's kept-alive connections, one pool per address and port it resolved
    to, TLS (SNI, certificate) for the name: a fresh TCP (and TLS) connection per
    webhook cost the sender and the buyer more than the request."""
    key = (os.getpid(), host)  # a forked process opens its own connections
    with _managers_lock:
        manager = _managers.pop(key, None) or PoolManager(
            num_pools=8, maxsize=CONNECTIONS_KEPT, retries=False, server_hostname=host,
            cert_reqs="CERT_REQUIRED")
        _managers[key] = manager
        evicted = _managers.popitem(last=False)[1] if len(_managers) > HOSTS_KEPT else None
    if evicted is not None:
        evicted.clear()
    return manager


def post(url: str, *, data: bytes, headers: dict, timeout: float,
         allow_private: bool) -> Reply:
    """POST to url and return the reply (its first REPLY_LIMIT bytes). Raises Refused,
    or requests.RequestException when the request fails.

    Sent by urllib3 itself (what requests sends through), without requests' own
    preparing of each request and response: half the CPU of a webhook's sending."""
    try:
        parts = parse_url(url)  # the path and query percent-encoded where they must be
    except LocationParseError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.host:
        raise Refused("refused: the URL does not start with http:// or https://")
    host = parts.host.strip("[]")
    if not host.isascii():
        host = host.encode("idna").decode()
    port = parts.port if parts.port is not None else (443 if parts.scheme == "https" else 80)
    addresses = resolve(host, port, allow_private)
    headers = {**headers, "Host": parts.netloc.rpartition("@")[2]}
    # A CA bundle named in the environment, as requests itself would honour.
    ca_certs = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                or DEFAULT_CA_BUNDLE_PATH)
    manager = _pools(host)
    for address in addresses:
        pool = manager.connection_from_host(address, port, parts.scheme,
                                            pool_kwargs={"ca_certs": ca_certs})
        try:
            response = pool.urlopen("POST", parts.request_uri, body=data, headers=headers,
                                    retries=False, redirect=False, preload_content=False,
                                    assert_same_host=False,
                                    timeout=Timeout(connect=timeout, read=timeout))
            try:
                body = response.read(REPLY_LIMIT, decode_content=True)
            finally:
                # A reply read to its end went back to the pool already; one longer
                # than REPLY_LIMIT (or cut short) closes its connection here.
                response.close()
                response.release_conn()
        except ConnectTimeoutError as exc:  # NewConnectionError too: nothing was sent
            if address != addresses[-1]:
                continue  # the next address only when nothing was sent to this one
            raise (requests.ConnectionError if isinstance(exc, NewConnectionError)
                   else requests.ConnectTimeout)(exc) from exc
        # Told as the requests errors they are (app.aftersale.delivery.engine.failure).
        except SSLError as exc:
            raise requests.exceptions.SSLError(exc) from exc
        except ReadTimeoutError as exc:
            raise requests.ReadTimeout(exc) from exc
        except HTTPError as exc:
            raise requests.ConnectionError(exc) from exc
        return Reply(response.status, response.headers.get("Content-Type", ""), body)
