"""GStreamer RTSP server for the camera simulator, run as its own process.

Usage::

    /usr/bin/python3 rtsp_gst_server.py CONFIG.json

This file runs under the system interpreter, the only one with the ``gi``
(PyGObject) bindings for GstRtspServer; it imports nothing from the project.
:class:`simulator.rtsp.RtspSimulator` is the venv-side driver.

CONFIG::

    {
      "host": "127.0.0.1",
      "port": 0,                       # 0 = pick a free port
      "backlog": 1024,                 # optional
      "threads": 8,                    # optional, client thread pool size
      "publish_clock_mode": "clock_and_offset",   # optional: none|clock|clock_and_offset
      "exit_on_stdin_eof": true,       # optional: quit when the parent goes away
      "tls_pem": "/path/cert+key.pem", # optional: every connection is RTSP over TLS (rtsps://)
      "mounts": {
        "/path": {"launch": "... ! rtph264pay name=pay0 pt=96",
                  "shared": false,
                  "protocols": ["tcp", "udp"],   # optional: the RTP transports the mount accepts
                  "auth": ["user", "pass"]}      # or null for an open mount
      }
    }

Once listening it prints ``READY <port>`` as the first stdout line. Errors go to
stderr and the exit status is non-zero; SIGTERM/SIGINT stop it with status 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

ANONYMOUS_ROLE = "anonymous"
DEFAULT_BACKLOG = 1024
DEFAULT_THREADS = 8

_CLOCK_MODES = {
    "none": GstRtspServer.RTSPPublishClockMode.NONE,
    "clock": GstRtspServer.RTSPPublishClockMode.CLOCK,
    # gst-rtsp-server marks media with CLOCK_AND_OFFSET streams non-seekable
    # (rtsp-media.c check_seekable), so the "Range: npt=0.000-" that FFmpeg
    # sends with PLAY no longer triggers a flushing seek of the pipeline.
    "clock_and_offset": GstRtspServer.RTSPPublishClockMode.CLOCK_AND_OFFSET,
}


_PROTOCOLS = {"tcp": GstRtsp.RTSPLowerTrans.TCP, "udp": GstRtsp.RTSPLowerTrans.UDP}


class ConfigError(Exception):
    pass


def load_config(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        config = json.load(fh)
    if not isinstance(config.get("mounts"), dict) or not config["mounts"]:
        raise ConfigError("config needs a non-empty 'mounts' object")
    for mount_path, mount in config["mounts"].items():
        if not mount_path.startswith("/"):
            raise ConfigError(f"mount path {mount_path!r} must start with '/'")
        if not isinstance(mount.get("launch"), str) or not mount["launch"].strip():
            raise ConfigError(f"mount {mount_path!r} needs a 'launch' string")
        auth = mount.get("auth")
        if auth is not None and (len(auth) != 2 or not all(isinstance(x, str) for x in auth)):
            raise ConfigError(f"mount {mount_path!r}: 'auth' must be [user, password] or null")
        protocols = mount.get("protocols", ["tcp", "udp"])
        if not protocols or any(p not in _PROTOCOLS for p in protocols):
            raise ConfigError(f"mount {mount_path!r}: 'protocols' must be a non-empty list of {sorted(_PROTOCOLS)}")
    if config.get("publish_clock_mode", "clock_and_offset") not in _CLOCK_MODES:
        raise ConfigError(f"publish_clock_mode must be one of {sorted(_CLOCK_MODES)}")
    return config


def build_server(config: dict[str, Any]) -> GstRtspServer.RTSPServer:
    server = GstRtspServer.RTSPServer()
    server.set_address(config.get("host", "127.0.0.1"))
    server.set_service(str(int(config.get("port", 0))))
    # Tests open many connections at once; the default backlog of 5 would make
    # the kernel drop SYNs and turn a load test into a retransmit-timing test.
    server.set_backlog(int(config.get("backlog", DEFAULT_BACKLOG)))
    # The default pool has one thread; clients handled in it block each other
    # while a media is prepared (pipeline preroll happens on DESCRIBE).
    server.get_thread_pool().set_max_threads(int(config.get("threads", DEFAULT_THREADS)))

    clock_mode = _CLOCK_MODES[config.get("publish_clock_mode", "clock_and_offset")]
    mounts_config: dict[str, dict[str, Any]] = config["mounts"]
    roles = _credential_roles(mounts_config)
    tls_pem = config.get("tls_pem")
    use_auth = bool(roles) or bool(tls_pem)
    if use_auth:
        auth = _build_auth(roles)
        if tls_pem:
            # with a certificate every connection is TLS (rtsps://)
            auth.set_tls_certificate(Gio.TlsCertificate.new_from_file(tls_pem))
        server.set_auth(auth)

    mount_points = server.get_mount_points()
    for mount_path, mount in mounts_config.items():
        factory = GstRtspServer.RTSPMediaFactory()
        launch = mount["launch"].strip()
        if not launch.startswith("("):
            launch = f"( {launch} )"
        _check_launch(mount_path, launch)
        factory.set_launch(launch)
        factory.set_shared(bool(mount.get("shared", False)))
        factory.set_publish_clock_mode(clock_mode)
        protocols = 0
        for name in mount.get("protocols", ["tcp", "udp"]):
            protocols |= _PROTOCOLS[name]
        factory.set_protocols(GstRtsp.RTSPLowerTrans(protocols))
        if use_auth:
            auth = mount.get("auth")
            constructors = [roles[tuple(auth)]] if auth else [ANONYMOUS_ROLE, *roles.values()]
            factory.set_permissions(_permissions([ANONYMOUS_ROLE, *roles.values()], constructors))
        mount_points.add_factory(mount_path, factory)
    return server


def _check_launch(mount_path: str, launch: str) -> None:
    """Fail at startup on a bad description instead of on the first DESCRIBE.

    gst-rtsp-server only parses the launch line when a client asks for the
    mount, and then merely logs the error while the client waits for a reply.
    """
    try:
        bin_ = Gst.parse_launch(launch)
    except GLib.Error as exc:
        raise ConfigError(f"mount {mount_path!r}: bad launch line: {exc.message}") from None
    if not isinstance(bin_, Gst.Bin) or bin_.get_by_name("pay0") is None:
        raise ConfigError(f"mount {mount_path!r}: launch line has no payloader named pay0")


def _credential_roles(mounts: dict[str, dict[str, Any]]) -> dict[tuple[str, str], str]:
    roles: dict[tuple[str, str], str] = {}
    for mount in mounts.values():
        auth = mount.get("auth")
        if auth:
            roles.setdefault((auth[0], auth[1]), f"credential-{len(roles)}")
    return roles


def _build_auth(roles: dict[tuple[str, str], str]) -> GstRtspServer.RTSPAuth:
    auth = GstRtspServer.RTSPAuth()
    auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
    # Requests without (valid) credentials get the default token; without one,
    # every mount would demand authentication once any mount does.
    auth.set_default_token(_token(ANONYMOUS_ROLE))
    for (user, password), role in roles.items():
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), _token(role))
    return auth


def _token(role: str) -> GstRtspServer.RTSPToken:
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, role)
    return token


def _permissions(accessors: list[str], constructors: list[str]) -> GstRtspServer.RTSPPermissions:
    """Everyone may *access* every mount; only ``constructors`` may *construct* it.

    rtsp-auth answers a failed access check with 404 (hiding the mount) but a
    failed construct check with 401 plus ``WWW-Authenticate``, and clients
    such as FFmpeg only send credentials after that challenge. So a protected
    mount grants access to all roles and construct to its own credential role;
    an open mount grants both to everyone, including the anonymous default.
    """
    permissions = GstRtspServer.RTSPPermissions()
    for role in accessors:
        permissions.add_permission_for_role(role, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role(
            role, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, role in constructors
        )
    return permissions


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write(f"usage: {argv[0]} CONFIG.json\n")
        return 2
    try:
        config = load_config(argv[1])
    except (OSError, ValueError, ConfigError) as exc:
        sys.stderr.write(f"rtsp_gst_server: bad config {argv[1]}: {exc}\n")
        return 2

    Gst.init(None)
    try:
        server = build_server(config)
    except ConfigError as exc:
        sys.stderr.write(f"rtsp_gst_server: {exc}\n")
        return 2

    loop = GLib.MainLoop()
    try:
        # create_source() binds and listens (with SO_REUSEADDR) and, unlike
        # attach(), reports why binding failed.
        source = server.create_source(None)
    except GLib.Error as exc:
        sys.stderr.write(
            f"rtsp_gst_server: cannot listen on {config.get('host', '127.0.0.1')}:"
            f"{config.get('port', 0)}: {exc.message}\n"
        )
        return 3
    source.attach(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, _quit, loop)
    if config.get("exit_on_stdin_eof", False):
        GLib.io_add_watch(
            GLib.IOChannel.unix_new(sys.stdin.fileno()),
            GLib.PRIORITY_DEFAULT,
            GLib.IOCondition.IN | GLib.IOCondition.HUP | GLib.IOCondition.ERR,
            _on_stdin,
            loop,
        )

    sys.stdout.write(f"READY {server.get_bound_port()}\n")
    sys.stdout.flush()
    loop.run()

    # Close client connections ourselves so clients see the socket close
    # promptly rather than on process teardown.
    server.client_filter(lambda _server, _client, *_: GstRtspServer.RTSPFilterResult.REMOVE)
    source.destroy()
    return 0


def _quit(loop: GLib.MainLoop) -> bool:
    loop.quit()
    return GLib.SOURCE_REMOVE


def _on_stdin(_channel: GLib.IOChannel, _condition: GLib.IOCondition, loop: GLib.MainLoop) -> bool:
    # The parent never writes; readable here means EOF, i.e. the parent died.
    if not os.read(sys.stdin.fileno(), 4096):
        loop.quit()
        return GLib.SOURCE_REMOVE
    return GLib.SOURCE_CONTINUE


if __name__ == "__main__":
    sys.exit(main(sys.argv))
