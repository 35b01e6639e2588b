"""The WS-Discovery side of a simulated camera: its UDP sockets and the ProbeMatches it answers.

Owns :class:`DiscoveryResponder`.  It answers Probes for
``dn:NetworkVideoTransmitter`` / ``tds:Device`` by multicast (group
239.255.255.250 joined on the camera's host address, so loopback works) and by
unicast at :attr:`DiscoveryResponder.unicast_port`.  Several cameras may share
the WS-Discovery port (multicast is delivered to every member); only the first
to bind gets that port for unicast as well, the others take a free one.

The camera (:mod:`.onvif`) owns the thread that waits on these sockets and
hands a readable one to :meth:`DiscoveryResponder.answer`.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
from typing import Protocol

from camera_discovery import ws_discovery as wsd
from camera_discovery import xmlsafe
from labwitness.errors import DeviceProtocolError

log = logging.getLogger(__name__)


class Announced(Protocol):
    """What a ProbeMatches tells about the camera (read at each answer)."""

    name: str
    endpoint: str
    quirks: frozenset[str]

    @property
    def xaddr(self) -> str: ...

    def scopes(self) -> list[str]: ...


class DiscoveryResponder:
    """One camera's WS-Discovery sockets; :meth:`open` again after :meth:`close` to restart."""

    def __init__(self, camera: Announced, host: str, port: int, multicast: bool) -> None:
        self.camera = camera
        self.host = host
        #: the WS-Discovery (multicast group) port; 0 until open() when asked for a free one
        self.port = port
        self.multicast = multicast
        #: where this camera answers directed (unicast) probes
        self.unicast_port = 0
        #: True once the multicast group is joined
        self.multicast_active = False
        #: the unicast socket first (answers go out from it), then the group's
        self.sockets: list[socket.socket] = []

    def open(self) -> None:
        """Bind the unicast socket and join the group; what is bound stays in :attr:`sockets` on failure."""
        unicast = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sockets.append(unicast)
        try:
            # No SO_REUSEADDR: with it, Linux would hand each unicast probe
            # to only one of several simulators sharing the port.
            unicast.bind((self.host, self.port))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            unicast.bind((self.host, 0))
        self.unicast_port = unicast.getsockname()[1]
        if self.port == 0:
            self.port = self.unicast_port
        self.multicast_active = False
        if self.multicast:
            self._join_group()

    def _join_group(self) -> None:
        group = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            group.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Bound to the group address, not 0.0.0.0: it hears only the
            # group's datagrams, and binds nothing on other interfaces.
            group.bind((wsd.MULTICAST_GROUP, self.port))
            membership = struct.pack("4s4s", socket.inet_aton(wsd.MULTICAST_GROUP), socket.inet_aton(self.host))
            group.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        except OSError as e:
            # e.g. a host without any multicast route: the camera still
            # answers directed probes, which the demo can fall back to
            group.close()
            log.warning("simulated camera %r: no multicast on %s (%s); unicast probes only", self.camera.name, self.host, e)
            return
        self.sockets.append(group)
        self.multicast_active = True

    def close(self) -> None:
        for s in self.sockets:
            s.close()
        self.sockets = []

    def answer(self, sock: socket.socket) -> None:
        """Read one datagram from ``sock``; a Probe for a camera gets a ProbeMatches, anything else nothing."""
        try:
            data, sender = sock.recvfrom(wsd.MAX_DATAGRAM)
        except OSError:
            return
        try:
            message_id, types = wsd.parse_probe(data, f"{sender[0]}:{sender[1]}")
        except DeviceProtocolError:
            return  # not a Probe (or unsafe XML): a camera ignores it
        wanted = {xmlsafe.local(t) for t in types}
        if not wanted <= {"networkvideotransmitter", "device"}:
            return
        camera = self.camera
        answer = wsd.build_probe_matches(
            wsd.new_message_id(), message_id or "", camera.endpoint, [camera.xaddr], camera.scopes()
        )
        if "malformed_probe_match" in camera.quirks:
            answer = answer[: len(answer) // 2]
        try:
            # answers go out from the unicast socket: its address is ours
            self.sockets[0].sendto(answer, sender)
        except OSError as e:
            log.debug("ProbeMatches to %s failed: %s", sender, e)
