"""Kept-alive connections to buyers (app.services.outbound): reused per host name and
resolved address, never carried to another address, against a real local HTTP/1.1
server; made-up names are answered by a stand-in for the resolver."""
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.services import outbound


class KeepAliveServer:
    """Answers POST /N with N bytes over HTTP/1.1 keep-alive; records, per request,
    the client's port and the local address it arrived on."""

    def __init__(self, host: str = "127.0.0.1"):
        self.seen: list[tuple[int, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.seen.append((self.client_address[1], self.connection.getsockname()[0]))
                body = b"x" * int(self.path.strip("/"))
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except ConnectionResetError:
                    pass  # the client read its REPLY_LIMIT and closed

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    running = KeepAliveServer("0.0.0.0")
    yield running
    running.close()


def _post(url: str) -> outbound.Reply:
    return outbound.post(url, data=b"{}", headers={"Content-Type": "application/json"},
                         timeout=5, allow_private=True)


def test_requests_to_one_host_reuse_its_connection_until_a_reply_is_too_long(server):
    url = f"http://127.0.0.1:{server.port}"
    assert [len(_post(f"{url}/2").body) for _ in range(3)] == [2, 2, 2]
    assert len({port for port, _ in server.seen}) == 1
    # A reply longer than REPLY_LIMIT is cut and its connection closed, not reused
    # with unread bytes in it.
    assert len(_post(f"{url}/{outbound.REPLY_LIMIT + 10}").body) == outbound.REPLY_LIMIT
    assert _post(f"{url}/2").body == b"xx"
    ports = [port for port, _ in server.seen]
    assert ports[3] == ports[0] and ports[4] != ports[0]


def test_a_kept_connection_never_goes_to_an_address_the_name_no_longer_resolves_to(
        server, monkeypatch):
    """The name moves from 127.0.0.1 to 127.0.0.2: the next request is sent to the new
    address on a connection of its own, as the lookup pinned it."""
    real, answers = socket.getaddrinfo, [["127.0.0.1"], ["127.0.0.1"], ["127.0.0.2"]]

    def getaddrinfo(host, port, *args, **kwargs):
        if host != "moving.example":
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers.pop(0)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for _ in range(3):
        assert _post(f"http://moving.example:{server.port}/2").status == 200
    (port1, at1), (port2, at2), (port3, at3) = server.seen
    assert (at1, at2, at3) == ("127.0.0.1", "127.0.0.1", "127.0.0.2")
    assert port1 == port2 and port3 != port1
