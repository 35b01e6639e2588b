"""Small real RTSP servers over real TCP for camera quirks GStreamer cannot produce.

- :class:`ImpatientProxy`: a proxy in front of the GStreamer server that
  advertises ``timeout=6`` and cuts the connection ``cut_after_s`` (3 s) after
  the client's last request once playing: a camera that drops sessions at half
  its advertised timeout.
- :class:`Redirector`: answers every request with a 3xx and a ``Location``
  (per path), or challenges for Basic credentials first; records what it got.

Both listen on 127.0.0.1 on a free port, run in daemon threads, and close every
socket on :meth:`close` (context managers).
"""

from __future__ import annotations

import re
import socket
import threading
import time


def _read_message(sock: socket.socket, buf: bytearray) -> bytes | None:
    """One RTSP text message or ``$`` frame from ``sock`` (``buf`` keeps leftovers); None at EOF."""
    while True:
        if buf[:1] == b"$" and len(buf) >= 4:
            n = 4 + int.from_bytes(buf[2:4], "big")
            if len(buf) >= n:
                out = bytes(buf[:n])
                del buf[:n]
                return out
        elif buf and buf[:1] != b"$":
            head = buf.find(b"\r\n\r\n")
            if head >= 0:
                m = re.search(rb"(?im)^content-length:\s*(\d+)", bytes(buf[:head]))
                n = head + 4 + (int(m.group(1)) if m else 0)
                if len(buf) >= n:
                    out = bytes(buf[:n])
                    del buf[:n]
                    return out
        data = sock.recv(65536)
        if not data:
            return None
        buf += data


class _Server:
    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            self._socks.append(c)
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def handle(self, c: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ImpatientProxy(_Server):
    """Advertises ``timeout=advertised_s`` and cuts a playing session ``cut_after_s`` after the last request."""

    def __init__(self, upstream_port: int, advertised_s: int = 6, cut_after_s: float = 3.0,
                 reset_every_s: float | None = None) -> None:
        """``reset_every_s``: also end every playing session that long after PLAY, whatever the
        client sends (a camera that resets sessions on a period)."""
        self.reset_every_s = reset_every_s
        self.upstream_port = upstream_port
        self.advertised_s = advertised_s
        self.cut_after_s = cut_after_s
        self.cuts = 0
        self.requests_while_playing = 0
        super().__init__()

    def url(self, path: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}{path}"

    def handle(self, c: socket.socket) -> None:
        up = socket.create_connection(("127.0.0.1", self.upstream_port))
        self._socks.append(up)
        state = {"last": time.monotonic(), "playing": False, "done": False, "since": 0.0}

        def client_to_up() -> None:
            buf = bytearray()
            try:
                while (msg := _read_message(c, buf)) is not None:
                    if msg[:1] != b"$":
                        state["last"] = time.monotonic()
                        if state["playing"]:
                            self.requests_while_playing += 1
                        if msg.startswith(b"PLAY "):
                            state["playing"], state["since"] = True, time.monotonic()
                    up.sendall(msg)
            except OSError:
                pass
            state["done"] = True

        def up_to_client() -> None:
            buf = bytearray()
            try:
                while (msg := _read_message(up, buf)) is not None:
                    if msg[:1] != b"$":  # (GStreamer leaves out timeout=60, its default)
                        msg = re.sub(rb"(?im)^(Session:[ \t]*[^\r\n;]+)(;[^\r\n]*)?",
                                     rb"\1;timeout=" + str(self.advertised_s).encode(), msg)
                    c.sendall(msg)
            except OSError:
                pass
            state["done"] = True

        threading.Thread(target=client_to_up, daemon=True).start()
        threading.Thread(target=up_to_client, daemon=True).start()
        while not state["done"] and not self._closed:
            if state["playing"] and time.monotonic() - state["last"] > self.cut_after_s:
                self.cuts += 1
                break
            if state["playing"] and self.reset_every_s and time.monotonic() - state["since"] > self.reset_every_s:
                self.cuts += 1
                break
            time.sleep(0.05)
        for s in (c, up):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class Redirector(_Server):
    """``routes``: path -> (status, Location) answered to every request on that path, or
    path -> ("auth", (status, Location)): a 401 Basic challenge first, the redirect once
    credentials come.  ``requests`` keeps every request's text."""

    def __init__(self, routes: dict[str, tuple]) -> None:
        self.routes = routes
        self.requests: list[str] = []
        super().__init__()

    def url(self, path: str, userinfo: str = "") -> str:
        return f"rtsp://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}{path}"

    def handle(self, c: socket.socket) -> None:
        buf = bytearray()
        try:
            while (msg := _read_message(c, buf)) is not None:
                text = msg.decode("latin-1")
                self.requests.append(text)
                method, uri = text.split(" ", 2)[:2]
                cseq = re.search(r"(?im)^cseq:\s*(\d+)", text)
                path = "/" + uri.split("://", 1)[-1].split("/", 1)[-1] if "://" in uri else uri
                route = self.routes.get(path.split("?")[0])
                head = f"CSeq: {cseq.group(1) if cseq else 0}\r\n"
                if route is None:
                    c.sendall(f"RTSP/1.0 404 Not Found\r\n{head}\r\n".encode())
                    continue
                if route[0] == "auth":
                    if not re.search(r"(?im)^authorization:\s*basic ", text):
                        c.sendall(f'RTSP/1.0 401 Unauthorized\r\n{head}WWW-Authenticate: Basic realm="cam"\r\n\r\n'.encode())
                        continue
                    route = route[1]
                status, location = route
                c.sendall(f"RTSP/1.0 {status} Moved\r\n{head}Location: {location}\r\n\r\n".encode())
        except OSError:
            pass
        finally:
            c.close()
