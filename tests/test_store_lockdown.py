"""The embedded store refuses every way around Object Lock (issue 14 §1).

The store is started the way the service starts it (``EmbeddedSeaweed`` with its own generated
credentials, the bucket made by ``S3ObjectStore.check()``) and a segment is stored locked in
COMPLIANCE mode through the service's client.  Then a local process *without the service's
secrets* -- plain ``http.client`` and sockets, and weed's own client tools run from a directory
without ``security.toml`` -- tries every attack that worked against the old configuration (issue
14: filer delete, overwrite and listing; volume delete; master collection delete; S3 with the
default credentials), on every TCP port and Unix socket the weed process listens on.  Each must be
refused, and afterwards the footage still downloads byte-identical and its chunk is intact.

Against the configuration before this change (no security.toml, HTTP APIs open, gRPC plain, S3
credentials from the environment) the table fails: 67 of 687 attacks succeed -- plain gRPC on every
port and socket, filer listing, reads, overwrites and deletes, volume overwrite and delete, the
master's lookup, assign, grow, submit and collection delete -- and the footage is gone.
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
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from minio import Minio
from minio.commonconfig import COMPLIANCE, GOVERNANCE
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.retention import Retention

from retention.policy import RetentionPolicy
from storage.layout import SegmentMeta
from storage.s3 import S3ObjectStore
from storage.seaweed import GRPC_OFFSET, EmbeddedSeaweed, weed_binary

ROOT = Path(__file__).resolve().parents[1]
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


def _http(where: int | str, method: str, path: str, body: bytes | None = None, multipart: bool = False,
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


def _grpc_answers(where: int | str, how: str, foreign: tuple[Path, Path]) -> bool:
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


def _foreign_cert(d: Path) -> tuple[Path, Path]:
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
def _authorized_shell(sw: EmbeddedSeaweed, commands: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """weed shell as the service could run it: from a directory holding the store's security.toml."""
    m, f = sw.ports["master"], sw.ports["filer"]
    return subprocess.run([weed_binary(), "shell", f"-master=127.0.0.1:{m}.{m + GRPC_OFFSET}",
                           f"-filer=127.0.0.1:{f}.{f + GRPC_OFFSET}"], input=commands, cwd=cwd,
                          env={**_clean_env(), "HOME": str(cwd)}, capture_output=True, text=True, timeout=timeout)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("WEED_", "AWS_"))}


def _jwt(key: str, fid: str) -> str:
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    head = enc(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = enc(json.dumps({"exp": int(time.time()) + 60, "fid": fid}).encode())
    sig = enc(hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def chunk_fids(sw: EmbeddedSeaweed, t_key: str, version_id: str) -> list[str]:
    out = _authorized_shell(sw, f"fs.meta.cat /buckets/{BUCKET}/{t_key}.versions/v_{version_id}\n", sw.data_dir).stdout
    return re.findall(r'"fileId":\s*"([0-9]+,[0-9a-f]+)"', out)


def chunk_bytes(sw: EmbeddedSeaweed, fid: str) -> tuple[int, bytes]:
    """The chunk as the volume server serves it to a holder of the read-signing key."""
    try:
        conf = tomllib.loads((sw.data_dir / "security.toml").read_text())
        headers = {"Authorization": "Bearer " + _jwt(conf["jwt"]["signing"]["read"]["key"], fid)}
    except (OSError, KeyError):  # no security.toml: the store before issue 14
        headers = {}
    status, body = _http(sw.ports["volume"], "GET", f"/{fid}", headers=headers)
    return status, body  # type: ignore[return-value]


# -- the store, the footage, and the attacker ----------------------------------------------------
@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """The embedded store started as the service starts it, holding one locked segment."""
    d = tmp_path_factory.mktemp("lockdown")
    sw = EmbeddedSeaweed(d / "seaweedfs", supervise=False).start()  # no credentials given: its own
    try:
        store = S3ObjectStore(sw.endpoint, sw.access_key, sw.secret_key, BUCKET)
        assert store.check().retention_enforced
        data = os.urandom(700_000)
        seg = d / "seg.mp4"
        seg.write_bytes(data)
        start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
        meta = SegmentMeta(camera_id="cam-lock", start=start, end=start + timedelta(seconds=60), media_duration_ms=60000,
                           codec="h264", width=640, height=360, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                           recorder_id="r1", session_id="s1", sequence=1, area_id="a1", frames=1500)
        stored = store.put_segment(seg, meta, RetentionPolicy()(meta.end))
        assert stored.mode == "COMPLIANCE"
        fids = chunk_fids(sw, stored.key, stored.version_id)
        assert len(fids) == 1, fids  # one chunk: 700 kB is below weed's chunk size
        assert chunk_bytes(sw, fids[0]) == (200, data)
        yield sw, store, stored, Target(stored.key, stored.version_id, fids[0], data), d
    finally:
        sw.stop()


def _weed_tool_attacks(sw: EmbeddedSeaweed, t: Target, attacker_dir: Path) -> dict[str, str | None]:
    """weed's own gRPC clients, run from a directory without the store's security.toml.

    Each returns None when refused, else what it achieved.  A refused shell never connects and
    waits; it is given 15 s (the four run at once)."""
    m, f = sw.ports["master"], sw.ports["filer"]
    shell = [weed_binary(), "shell", f"-master=127.0.0.1:{m}.{m + GRPC_OFFSET}", f"-filer=127.0.0.1:{f}.{f + GRPC_OFFSET}"]
    env = {**_clean_env(), "HOME": str(attacker_dir)}
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
        run([weed_binary(), "filer.cat", "-o", str(out), f"http://127.0.0.1:{f}{t.fmt('{ver}')}"])
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


def _s3_attacks(sw: EmbeddedSeaweed, t: Target) -> dict[str, str | None]:
    """Anonymous S3, S3 with every known credential, and what the service's own may not do."""
    s3 = sw.ports["s3"]
    out: dict[str, str | None] = {}
    for method, path in [("GET", "/"), ("GET", f"/{BUCKET}?versions"), ("GET", f"/{BUCKET}/{t.key}"),
                         ("GET", f"/{BUCKET}/{t.key}?versionId={t.version_id}"),
                         ("DELETE", f"/{BUCKET}/{t.key}?versionId={t.version_id}"), ("PUT", f"/{BUCKET}/{t.key}"),
                         ("DELETE", f"/{BUCKET}"), ("POST", "/?Action=CreateAccessKey&UserName=x")]:
        status, body = _http(s3, method, path, ZEROS if method == "PUT" else None)
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
    own = Minio(f"127.0.0.1:{s3}", access_key=sw.access_key, secret_key=sw.secret_key, secure=False)
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


@pytest.mark.slow
def test_every_attack_on_every_port_is_refused_and_the_footage_survives(locked):
    sw, store, stored, t, d = locked
    ports, sockets = listening(sw.proc.pid)
    http_ports = set(sw.ports.values())
    grpc_ports = {p + GRPC_OFFSET for p in http_ports}
    # every port weed opened is one it was given (nothing unexpected to attack), all on loopback
    assert http_ports <= ports and ports <= http_ports | grpc_ports, (ports, sw.ports)
    assert len(sockets) >= 5, sockets  # the gRPC sockets in /tmp, the filer's and S3's local sockets
    targets: list[int | str] = sorted(ports) + sorted(sockets)
    attacker = d / "attacker"
    attacker.mkdir()
    foreign = _foreign_cert(attacker)
    failures: list[str] = []
    tried = 0

    # 1. status pages may answer anyone, but name no key, version or chunk
    secrets_of_the_object = [t.key.rsplit("/", 1)[-1], t.version_id, t.fid]
    for where in targets:
        for path in STATUS_PATHS:
            tried += 1
            status, body = _http(where, "GET", path)
            leaked = [s for s in secrets_of_the_object if s.encode() in body]
            if status == 200 and leaked:
                failures.append(f"{where} GET {path}: 200 naming {leaked}")

    # 2. gRPC on every port and socket: no plain-text client, none without our CA's certificate
    for where in targets:
        for how in ("plain", "TLS without a client certificate", "foreign cert"):
            tried += 1
            if _grpc_answers(where, how, foreign):
                failures.append(f"{where}: gRPC answers a client ({how})")

    # 3. the HTTP attacks of issue 14, on every port and socket
    for attack in HTTP_ATTACKS:
        for where in targets:
            tried += 1
            status, body = _http(where, attack.method, t.fmt(attack.path), attack.body, attack.multipart)
            if status not in REFUSED and not isinstance(status, str):
                failures.append(f"{where} {attack.name} ({attack.method} {t.fmt(attack.path)}): HTTP {status} "
                                f"{body[:80]!r}")

    # 4. weed's own gRPC tools without the store's security.toml; 5. S3
    for name, achieved in {**_weed_tool_attacks(sw, t, attacker), **_s3_attacks(sw, t)}.items():
        tried += 1
        if achieved:
            failures.append(f"{name}: {achieved}")

    # the footage: byte-identical through the service's credentials, still locked, chunk intact
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
    fids = chunk_fids(sw, t.key, t.version_id)
    if fids != [t.fid]:
        survived.append(f"chunk list now {fids}, was [{t.fid}]")
    if chunk_bytes(sw, t.fid) != (200, t.data):
        survived.append("the chunk on the volume server is gone or altered")
    assert not failures and not survived, (f"{len(failures)} of {tried} attacks not refused:\n  " + "\n  ".join(failures)
                                           + "\nfootage afterwards: " + ("; ".join(survived) or "intact"))


def test_secrets_are_the_services_alone_and_survive_a_restart(locked):
    sw, store, stored, t, d = locked
    sd = sw.data_dir
    for sub in ("", "tls", "data"):
        assert ((sd / sub).stat().st_mode & 0o777) == 0o700, sub
    for f in ("security.toml", "s3-identity.json", "tls/ca.crt", "tls/node.crt", "tls/node.key"):
        assert ((sd / f).stat().st_mode & 0o777) == 0o600, f
    assert not (sd / "tls" / "ca.key").exists()  # no one can sign another certificate
    conf = tomllib.loads((sd / "security.toml").read_text())
    keys = [conf["jwt"]["signing"]["key"], conf["jwt"]["signing"]["read"]["key"], conf["jwt"]["filer_signing"]["key"],
            conf["jwt"]["filer_signing"]["read"]["key"]]
    assert len(set(keys)) == 4 and all(len(k) >= 48 for k in keys)
    # weed's gRPC Unix sockets in /tmp are the service user's alone
    _, sockets = listening(sw.proc.pid)
    for path in sockets:
        assert (os.stat(path).st_mode & 0o077) == 0, path
    # ... and another local user (postgres, which the test box has) can neither connect nor read the keys
    probe = ("import socket,sys\nfor p in sys.argv[1:]:\n    s=socket.socket(socket.AF_UNIX)\n    try:\n"
             "        s.connect(p) if p.endswith('.sock') else open(p).read()\n        print('OPEN', p)\n"
             "    except PermissionError:\n        print('EACCES', p)\n")
    tmp_socks = sorted(p for p in sockets if p.startswith("/tmp/"))
    out = subprocess.run(["runuser", "-u", "postgres", "--", "python3", "-c", probe, *tmp_socks,
                          str(sd / "security.toml"), str(sd / "s3-identity.json")],
                         capture_output=True, text=True, timeout=30)
    lines = out.stdout.split("\n")
    assert len(tmp_socks) >= 5 and sum(ln.startswith("EACCES") for ln in lines) == len(tmp_socks) + 2, out
    # a second store directory gets other keys: nothing is shared between installations
    from storage.seaweed_secrets import ensure_credentials, ensure_security

    other = d / "other-install"
    assert ensure_credentials(other) != sw.credentials
    ensure_security(other)
    assert (other / "security.toml").read_text() != (sd / "security.toml").read_text()
    # a restart on the same directory reuses ports, keys and credentials; the footage is still there
    before = (sw.credentials, dict(sw.ports), (sd / "security.toml").read_text())
    sw.pause()
    sw.resume()
    assert (sw.credentials, sw.ports, (sd / "security.toml").read_text()) == before
    assert store.open(t.key, t.version_id).read() == t.data


def test_no_default_credential_left_in_code_or_docs():
    """The old defaults are gone from everything but this test's list of what to try."""
    me = Path(__file__).resolve()
    needles = [sk for _, sk in KNOWN_CREDENTIALS[:3]]
    hits = []
    for pattern in ("**/*.py", "**/*.md", "**/*.toml", "**/*.sh", "**/*.yml", "**/*.yaml", "**/*.json"):
        for p in ROOT.glob(pattern):
            if p == me or any(part.startswith(".") or part.endswith(".egg-info") for part in p.relative_to(ROOT).parts):
                continue
            text = p.read_text(encoding="utf-8", errors="replace")
            hits += [f"{p.relative_to(ROOT)}: {n}" for n in needles if n in text]
    assert not hits, hits


@pytest.mark.parametrize("profile, protects, not_against", [
    ("embedded", ["every API of the store but S3", "every local user but root", "own credentials"], ["root on this box"]),
    ("external", ["root included", "another administrative domain"], ["external store's own administrators"]),
])
def test_each_profile_says_what_it_protects_against(profile, protects, not_against):
    from storage.protection import storage_protection

    p = storage_protection(profile)
    assert p["profile"] == profile
    yes, no = " ".join(p["protects_against"]), " ".join(p["does_not_protect_against"])
    assert all(s in yes for s in protects) and all(s in no for s in not_against), p
    assert all(" / " in line for line in [*p["protects_against"], *p["does_not_protect_against"]])  # zh / en


def test_the_service_runs_the_store_on_its_own_credentials_and_health_names_the_profile(tmp_path, caplog):
    """The embedded profile: no keys configured, none in code; those given anyway are ignored."""
    from api.runtime import Runtime
    from api.settings import load_settings
    from storage.seaweed_secrets import read_credentials

    s = load_settings(data_dir=tmp_path / "data", retention_jobs=False, s3_access_key="labwitness",
                      s3_secret_key="labwitness-secret-key")
    with Runtime(s, recording=False) as rt:
        cred = read_credentials(tmp_path / "data" / "seaweedfs")
        assert cred is not None and rt.seaweed is not None and rt.seaweed.credentials == cred
        assert cred.access_key != "labwitness" and len(cred.secret_key) >= 40
        assert "are ignored" in caplog.text
        assert rt.store.check().retention_enforced
        rep = rt.health.report()
        assert rep["storage_protection"]["profile"] == "embedded"
        assert "root" in " ".join(rep["storage_protection"]["does_not_protect_against"])
        c = Minio(rt.seaweed.endpoint.removeprefix("http://"), access_key="labwitness",
                  secret_key="labwitness-secret-key", secure=False)
        with pytest.raises(S3Error):
            c.list_buckets()
