"""Attacks on a SeaweedFS store without its secrets, shared by the embedded store's lock-down test
(tests/test_store_lockdown.py) and the cluster's (tests/test_store_cluster.py).

A store is seen through :class:`Weed`: its master, filer, one volume server and S3 gateway, and the
directory holding its ``security.toml`` (what the service may use, to look at the footage's chunk
from the inside).  Every attack returns what it achieved, or None when refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import time
import tomllib
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from minio import Minio
from minio.commonconfig import COMPLIANCE, GOVERNANCE
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.retention import Retention

from retention.policy import RetentionPolicy
from storage.layout import SegmentMeta
from storage.seaweed import GRPC_OFFSET, weed_binary


@dataclass(frozen=True)
class Weed:
    """One store on 127.0.0.1 as the attacks aim at it; ``master``/``filer`` are weed addresses
    (``host:port.grpc``), ``volume`` and ``s3`` HTTP ports, ``secrets`` the directory of its
    ``security.toml`` and identity."""

    master: str
    filer: str
    volume: int
    s3: int
    secrets: Path
    access_key: str
    secret_key: str = field(repr=False)

    @property
    def filer_port(self) -> int:
        return int(self.filer.rsplit(":", 1)[1].split(".")[0])

    @classmethod
    def embedded(cls, sw) -> "Weed":
        m, f = sw.ports["master"], sw.ports["filer"]
        return cls(f"127.0.0.1:{m}.{m + GRPC_OFFSET}", f"127.0.0.1:{f}.{f + GRPC_OFFSET}", sw.ports["volume"],
                   sw.ports["s3"], sw.data_dir, sw.access_key, sw.secret_key)

    @classmethod
    def cluster(cls, c, volume: str) -> "Weed":
        lay = c.layout
        return cls(lay.masters[0].address, lay.filer.address, lay.node(volume).port, lay.s3.port, lay.secrets_dir,
                   c.access_key, c.secret_key)

BUCKET = "lockdown-footage"
#: every S3 credential that ever appeared in this project's code or docs, and weed's and MinIO's
#: documented examples: none may open the store
KNOWN_CREDENTIALS = [
    ("labwitness", "labwitness-secret-key"),  # api/settings.py's defaults before issue 14
    ("labwitness-test", "labwitness-test-secret"),  # tests/conftest.py's, before
    ("labwitness-bench", "labwitness-bench-secret"),  # bench/'s, before
    ("your_access_key", "your_secret_key"), ("your-access-key", "your-secret-key"),  # weed's help texts
    ("minioadmin", "minioadmin"), ("admin", "admin"), ("any", "any"),
]
REFUSED = {400, 401, 403, 404, 405}
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


@dataclass(frozen=True)
class Target:
    """What the attacks aim at: the locked version as the filer and volume server name it."""

    key: str
    version_id: str
    fid: str
    data: bytes

    def fmt(self, s: str) -> str:
        versions = f"/buckets/{BUCKET}/{self.key}.versions"
        return s.format(bucket=BUCKET, obj=f"/buckets/{BUCKET}/{self.key}", dir=versions,
                        ver=f"{versions}/v_{self.version_id}", fid=self.fid)


@dataclass(frozen=True)
class Attack:
    name: str
    method: str
    path: str
    body: bytes | None = None
    multipart: bool = False


ZEROS = b"\x00" * 4096
HTTP_ATTACKS = [
    # reads first: against the old configuration they show what leaked before anything is destroyed
    Attack("filer: list /buckets/", "GET", "/buckets/?limit=1000"),
    Attack("filer: list the bucket", "GET", "/buckets/{bucket}/?pretty=y"),
    Attack("filer: list the versions", "GET", "{dir}/"),
    Attack("filer: GET the version file", "GET", "{ver}"),
    Attack("filer: GET the version's metadata", "GET", "{ver}?metadata=true"),
    Attack("volume: GET the chunk", "GET", "/{fid}"),
    Attack("master: lookup (hands out a write token)", "GET", "/dir/lookup?fileId={fid}"),
    Attack("master: directory status", "GET", "/dir/status"),
    Attack("master: volume status", "GET", "/vol/status"),
    Attack("master: collection info", "GET", "/collection/info?collection={bucket}"),
    Attack("master: redirect to the chunk", "GET", "/{fid}"),
    Attack("master: assign a file id", "GET", "/dir/assign?collection={bucket}"),
    Attack("master: grow volumes", "GET", "/vol/grow?count=1&collection={bucket}"),
    Attack("master: submit a file", "POST", "/submit?collection={bucket}", ZEROS, multipart=True),
    Attack("admin: list volumes", "GET", "/api/cluster/volumes"),
    # then the destructive ones
    Attack("filer: PUT over the version file", "PUT", "{ver}", ZEROS),
    Attack("filer: multipart POST over the version file", "POST", "{ver}", ZEROS, multipart=True),
    Attack("volume: PUT over the chunk", "PUT", "/{fid}", ZEROS),
    Attack("volume: multipart POST over the chunk", "POST", "/{fid}", ZEROS, multipart=True),
    Attack("volume: DELETE the chunk", "DELETE", "/{fid}"),
    Attack("filer: DELETE the version file", "DELETE", "{ver}"),
    Attack("filer: DELETE the object", "DELETE", "{obj}?recursive=true"),
    Attack("filer: DELETE the .versions dir recursively", "DELETE", "{dir}?recursive=true&ignoreRecursiveError=true"),
    Attack("master: vacuum", "GET", "/vol/vacuum?garbageThreshold=0.0001"),
    Attack("master: collection delete", "GET", "/col/delete?collection={bucket}"),
    Attack("master: collection delete (POST)", "POST", "/col/delete?collection={bucket}"),
    Attack("admin: delete the collection", "DELETE", "/api/cluster/collections/{bucket}"),
    Attack("filer: DELETE the bucket", "DELETE", "/buckets/{bucket}?recursive=true&ignoreRecursiveError=true"),
]
#: read-only status pages weed serves to anyone; they may answer, but must name no key, version or chunk
STATUS_PATHS = ["/", "/status", "/ui/index.html", "/cluster/status", "/metrics", "/healthz", "/stats/counter"]


# -- how an outsider reaches a port or socket ----------------------------------------------------
class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def http_request(where: int | str, method: str, path: str, body: bytes | None = None, multipart: bool = False,
          headers: dict | None = None) -> tuple[int | str, bytes]:
    conn = (http.client.HTTPConnection("127.0.0.1", where, timeout=10) if isinstance(where, int)
            else _UnixHTTPConnection(where, timeout=10))
    hdrs = dict(headers or {})
    if multipart and body is not None:
        boundary = uuid.uuid4().hex
        name = path.rsplit("/", 1)[-1].split("?")[0] or "x"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
        hdrs["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        return r.status, r.read(1 << 20)
    except (OSError, http.client.HTTPException) as e:
        return f"no answer ({type(e).__name__})", b""
    finally:
        conn.close()


def _connect(where: int | str) -> socket.socket:
    if isinstance(where, int):
        return socket.create_connection(("127.0.0.1", where), timeout=5)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(where)
    return s


def _speaks_h2(s: socket.socket) -> bool:
    """Whether the peer answers an HTTP/2 preface with a SETTINGS frame: a gRPC server talking to us."""
    try:
        s.sendall(PREFACE)
        head = b""
        while len(head) < 9:
            chunk = s.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
        return head[3] == 0x04
    except (OSError, ssl.SSLError):
        return False


def grpc_answers(where: int | str, how: str, foreign: tuple[Path, Path]) -> bool:
    """Does a gRPC server at ``where`` talk to a client in plain text, over TLS without a client
    certificate, or over TLS with a certificate of a CA of the attacker's own?"""
    try:
        raw = _connect(where)
    except OSError:
        return False
    with raw:
        if how == "plain":
            return _speaks_h2(raw)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        if how == "foreign cert":
            ctx.load_cert_chain(*foreign)
        try:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                return _speaks_h2(s)
        except (OSError, ssl.SSLError):
            return False


def foreign_cert(d: Path) -> tuple[Path, Path]:
    """A self-signed client certificate: what an attacker can make without the store's CA."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(d / "k.pem"), "-out", str(d / "c.pem"), "-days", "2", "-subj", "/CN=labwitness-store"],
                   check=True, capture_output=True)
    return d / "c.pem", d / "k.pem"


def listening(pid: int) -> tuple[set[int], set[str]]:
    """Every TCP port and Unix socket path process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    paths = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        f = line.split()
        if len(f) >= 8 and f[6] in inodes and f[3] == "00010000":  # __SO_ACCEPTCON: listening
            paths.add(f[7])
    return ports, paths


# -- what the service (with its secrets) can see -------------------------------------------------
def authorized_shell(w: Weed, commands: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """weed shell as the service could run it: from a directory holding the store's security.toml."""
    return subprocess.run([weed_binary(), "shell", f"-master={w.master}", f"-filer={w.filer}"], input=commands, cwd=cwd,
                          env={**clean_env(), "HOME": str(cwd)}, capture_output=True, text=True, timeout=timeout)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("WEED_", "AWS_"))}


def _jwt(key: str, fid: str) -> str:
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    head = enc(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = enc(json.dumps({"exp": int(time.time()) + 60, "fid": fid}).encode())
    sig = enc(hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def chunk_fids(w: Weed, t_key: str, version_id: str) -> list[str]:
    out = authorized_shell(w, f"fs.meta.cat /buckets/{BUCKET}/{t_key}.versions/v_{version_id}\n", w.secrets).stdout
    return re.findall(r'"fileId":\s*"([0-9]+,[0-9a-f]+)"', out)


def chunk_bytes(w: Weed, fid: str) -> tuple[int, bytes]:
    """The chunk as the volume server serves it to a holder of the read-signing key."""
    try:
        conf = tomllib.loads((w.secrets / "security.toml").read_text())
        headers = {"Authorization": "Bearer " + _jwt(conf["jwt"]["signing"]["read"]["key"], fid)}
    except (OSError, KeyError):  # no security.toml: the store before issue 14
        headers = {}
    status, body = http_request(w.volume, "GET", f"/{fid}", headers=headers)
    return status, body  # type: ignore[return-value]


# -- the store, the footage, and the attacker ----------------------------------------------------
def weed_tool_attacks(w: Weed, t: Target, attacker_dir: Path) -> dict[str, str | None]:
    """weed's own gRPC clients, run from a directory without the store's security.toml.

    Each returns None when refused, else what it achieved.  A refused shell never connects and
    waits; it is given 15 s (the four run at once)."""
    shell = [weed_binary(), "shell", f"-master={w.master}", f"-filer={w.filer}"]
    env = {**clean_env(), "HOME": str(attacker_dir)}
    versions = t.fmt("{dir}")

    def run(args: list[str], stdin: str = "") -> tuple[int | None, str]:
        try:
            p = subprocess.run(args, input=stdin, cwd=attacker_dir, env=env, capture_output=True, text=True, timeout=15)
            return p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired:
            return None, ""

    def shell_cmd(cmd: str, leaked: str | None = None):
        def go() -> str | None:
            rc, out = run(shell, cmd + "\n")
            if leaked is not None:
                return f"printed {leaked}" if leaked in out else None
            return None if rc is None or rc != 0 or "error" in out.lower() else f"exit {rc}: {out[-200:]!r}"
        return go

    def cat() -> str | None:
        out = attacker_dir / "stolen.bin"
        run([weed_binary(), "filer.cat", "-o", str(out), f"http://127.0.0.1:{w.filer_port}{t.fmt('{ver}')}"])
        got = out.read_bytes() if out.exists() else b""
        return f"read {len(got)} bytes of the footage" if got and got in t.data else None

    attacks = {
        "weed shell (gRPC): fs.meta.cat shows the chunk id": shell_cmd(f"fs.meta.cat {t.fmt('{ver}')}", leaked=t.fid),
        "weed filer.cat (gRPC + volume): read the version": cat,
        "weed shell (gRPC): fs.rm -r the versions": shell_cmd(f"fs.rm -r {versions}"),
        "weed shell (gRPC): collection.delete the bucket": shell_cmd(f"collection.delete -collection={BUCKET} -apply"),
    }
    with ThreadPoolExecutor(len(attacks)) as pool:
        futures = {name: pool.submit(fn) for name, fn in attacks.items()}
        return {name: fut.result() for name, fut in futures.items()}


def s3_attacks(w: Weed, t: Target) -> dict[str, str | None]:
    """Anonymous S3, S3 with every known credential, and what the service's own may not do."""
    s3 = w.s3
    out: dict[str, str | None] = {}
    for method, path in [("GET", "/"), ("GET", f"/{BUCKET}?versions"), ("GET", f"/{BUCKET}/{t.key}"),
                         ("GET", f"/{BUCKET}/{t.key}?versionId={t.version_id}"),
                         ("DELETE", f"/{BUCKET}/{t.key}?versionId={t.version_id}"), ("PUT", f"/{BUCKET}/{t.key}"),
                         ("DELETE", f"/{BUCKET}"), ("POST", "/?Action=CreateAccessKey&UserName=x")]:
        status, body = http_request(s3, method, path, ZEROS if method == "PUT" else None)
        out[f"S3 anonymous: {method} {path}"] = None if status in REFUSED else f"HTTP {status}"
    for ak, sk in KNOWN_CREDENTIALS:
        c = Minio(f"127.0.0.1:{s3}", access_key=ak, secret_key=sk, secure=False)
        for what, call in [("list the bucket", lambda: list(c.list_objects(BUCKET, recursive=True, include_version=True))),
                           ("read the footage", lambda: c.get_object(BUCKET, t.key, version_id=t.version_id).read()),
                           ("delete the version", lambda: c.remove_object(BUCKET, t.key, version_id=t.version_id))]:
            try:
                call()
                out[f"S3 as {ak!r}: {what}"] = "allowed"
            except S3Error as e:
                out[f"S3 as {ak!r}: {what}"] = None if e.code in {"InvalidAccessKeyId", "SignatureDoesNotMatch",
                                                                   "AccessDenied"} else f"S3 error {e.code}"
    own = Minio(f"127.0.0.1:{s3}", access_key=w.access_key, secret_key=w.secret_key, secure=False)
    soon = datetime.now(timezone.utc) + timedelta(days=1)
    for what, call in [
        ("delete the locked version", lambda: own.remove_object(BUCKET, t.key, version_id=t.version_id)),
        ("shorten its retention", lambda: own.set_object_retention(BUCKET, t.key, Retention(COMPLIANCE, soon),
                                                                   version_id=t.version_id)),
        ("switch it to GOVERNANCE", lambda: own.set_object_retention(BUCKET, t.key, Retention(GOVERNANCE, soon),
                                                                     version_id=t.version_id)),
        ("delete the bucket", lambda: own.remove_bucket(BUCKET)),
        # a multi-object delete reports a refused key in its answer (a list of errors), not as an exception
        ("delete the version in a multi-object delete",
         lambda: list(own.remove_objects(BUCKET, [DeleteObject(t.key, t.version_id)]))),
    ]:
        try:
            result = call()
            refused = isinstance(result, list) and len(result) > 0
            out[f"S3 with the service's own credentials: {what}"] = None if refused else "allowed"
        except S3Error:
            out[f"S3 with the service's own credentials: {what}"] = None
    return out




# -- the families of attacks, each on every port and socket it is given ------------------------------
def status_leaks(targets: list[int | str], t: Target, _w: Weed, _attacker: Path) -> tuple[int, list[str]]:
    """Status pages may answer anyone, but name no key, version or chunk."""
    tried, failures = 0, []
    secrets_of_the_object = [t.key.rsplit("/", 1)[-1], t.version_id, t.fid]
    for where in targets:
        for path in STATUS_PATHS:
            tried += 1
            status, body = http_request(where, "GET", path)
            leaked = [s for s in secrets_of_the_object if s.encode() in body]
            if status == 200 and leaked:
                failures.append(f"{where} GET {path}: 200 naming {leaked}")
    return tried, failures


def grpc_openings(targets: list[int | str], _t: Target, _w: Weed, attacker: Path) -> tuple[int, list[str]]:
    """gRPC: no plain-text client, none without a certificate of the store's CA."""
    tried, failures = 0, []
    foreign = foreign_cert(attacker)
    for where in targets:
        for how in ("plain", "TLS without a client certificate", "foreign cert"):
            tried += 1
            if grpc_answers(where, how, foreign):
                failures.append(f"{where}: gRPC answers a client ({how})")
    return tried, failures


def http_breaches(targets: list[int | str], t: Target, _w: Weed, _attacker: Path) -> tuple[int, list[str]]:
    """The HTTP attacks of issue 14 (filer, master, volume without a JWT, admin)."""
    tried, failures = 0, []
    for attack in HTTP_ATTACKS:
        for where in targets:
            tried += 1
            status, body = http_request(where, attack.method, t.fmt(attack.path), attack.body, attack.multipart)
            if status not in REFUSED and not isinstance(status, str):
                failures.append(f"{where} {attack.name} ({attack.method} {t.fmt(attack.path)}): HTTP {status} "
                                f"{body[:80]!r}")
    return tried, failures


def tool_and_s3_breaches(_targets: list[int | str], t: Target, w: Weed, attacker: Path) -> tuple[int, list[str]]:
    """weed's own gRPC tools without the store's security.toml; S3 anonymous, with known and own keys."""
    found = {**weed_tool_attacks(w, t, attacker), **s3_attacks(w, t)}
    return len(found), [f"{name}: {achieved}" for name, achieved in found.items() if achieved]


FAMILIES = {"status pages": status_leaks, "gRPC without the CA's cert": grpc_openings,
            "HTTP (volume without JWT, filer, master)": http_breaches, "weed tools and S3": tool_and_s3_breaches}


def footage_damage(w: Weed, store, stored, t: Target) -> list[str]:
    """What happened to the footage: nothing, when it downloads byte-identical through the service's
    credentials, is still locked as stored, and its chunk is intact on the volume servers."""
    survived: list[str] = []
    try:
        got = store.open(t.key, t.version_id).read()
        if got != t.data:
            survived.append(f"download differs ({len(got)} bytes)")
        now, _ = store.stat(t.key, t.version_id)
        if (now.mode, now.retain_until) != ("COMPLIANCE", stored.retain_until):
            survived.append(f"lock changed: {now.mode} until {now.retain_until}")
    except Exception as e:  # noqa: BLE001 -- any failure to read it back is the finding
        survived.append(f"download failed: {e!r}")
    fids = chunk_fids(w, t.key, t.version_id)
    if fids != [t.fid]:
        survived.append(f"chunk list now {fids}, was [{t.fid}]")
    if chunk_bytes(w, t.fid) != (200, t.data):
        survived.append("the chunk on the volume server is gone or altered")
    return survived


def store_segment(store, d: Path, camera_id: str, sequence: int = 1, size: int = 700_000, ago_s: int = 300):
    """A random segment of ``size`` bytes stored locked (COMPLIANCE, retain-until of the policy) through
    the service's own client; returns ``(stored, data)``."""
    data = os.urandom(size)
    seg = d / f"{camera_id}-{sequence}.mp4"
    seg.write_bytes(data)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=ago_s)
    meta = SegmentMeta(camera_id=camera_id, start=start, end=start + timedelta(seconds=60), media_duration_ms=60000,
                       codec="h264", width=640, height=360, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                       recorder_id="r1", session_id="s1", sequence=sequence, area_id="a1", frames=1500)
    stored = store.put_segment(seg, meta, RetentionPolicy()(meta.end))
    seg.unlink()
    return stored, data
