"""The embedded SeaweedFS's per-installation secrets, generated on first start.

Everything lives in the store's directory (0700), every file 0600:

- ``s3-identity.json``: the one S3 identity the store accepts, in weed's own
  ``-s3.config`` format; the service reads its access/secret key from it.  No
  credential is a default anywhere: a fresh directory gets fresh random keys.
- ``security.toml``: read by weed from its working directory.  JWT signing keys
  for the volume servers (writes and reads) and the filer (writes and reads), so
  their HTTP APIs refuse requests the master or filer did not sign; gRPC mutual
  TLS with the certificates below, so only a holder of the key file can speak
  gRPC to the master, volume, filer, S3 and admin servers (each otherwise lets
  anyone delete a collection, a volume or a file's entry).
- ``tls/``: a private CA and one certificate for all of weed's components (weed
  does not check host names; the CA exists for this installation only, so a
  certificate it signed is proof of reading these files).

Root can read the files, and can delete data from disk anyway: that is what
seals witnessed outside the box are for (README, "What each storage profile
protects against").
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from labwitness.errors import ConfigError
from labwitness.private_fs import FILE_MODE, private_dir, write_atomic

IDENTITY_FILE = "s3-identity.json"
SECURITY_FILE = "security.toml"
TLS_DIR = "tls"
#: the identity's name in weed's config (shown in weed's own logs, not a secret)
IDENTITY_NAME = "labwitness"
#: every gRPC component of weed, server and client side: each takes the one certificate
GRPC_COMPONENTS = ("master", "volume", "filer", "s3", "admin", "worker", "msg_broker", "msg_agent", "mq", "client")
_JWT_SECTIONS = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str = field(repr=False)




def _identity_json(cred: S3Credentials) -> str:
    return json.dumps({"identities": [{
        "name": IDENTITY_NAME,
        "credentials": [{"accessKey": cred.access_key, "secretKey": cred.secret_key}],
        # Admin: the service creates its bucket with Object Lock; COMPLIANCE binds admins too
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }]}, indent=2)


def read_credentials(store_dir: Path) -> S3Credentials | None:
    """The store's S3 identity, or None when the directory has none yet."""
    f = Path(store_dir) / IDENTITY_FILE
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
        c = data["identities"][0]["credentials"][0]
        return S3Credentials(str(c["accessKey"]), str(c["secretKey"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise ConfigError(f"嵌入式对象存储的凭据文件损坏 / the embedded store's credentials file {f} is unreadable: {e}; "
                          "stop labwitness and restore it from a backup (deleting it issues new keys)") from e


def ensure_credentials(store_dir: Path, given: S3Credentials | None = None) -> S3Credentials:
    """The store's S3 identity: the one in its directory, generated there on first use.

    ``given`` (tests and benchmarks that fix their own) replaces what is stored.
    """
    store_dir = private_dir(store_dir)
    current = read_credentials(store_dir)
    want = given or current or S3Credentials("lw" + secrets.token_hex(9), secrets.token_urlsafe(32))
    if want != current:
        write_atomic(store_dir / IDENTITY_FILE, _identity_json(want).encode())
    else:
        os.chmod(store_dir / IDENTITY_FILE, FILE_MODE)
    return want


def _security_complete(store_dir: Path) -> bool:
    try:
        conf = tomllib.loads((store_dir / SECURITY_FILE).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False
    for section in _JWT_SECTIONS:
        node = conf
        for part in section.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if not (isinstance(node, dict) and len(str(node.get("key", ""))) >= 32):
            return False
    tls = store_dir / TLS_DIR
    return all((tls / n).is_file() for n in ("ca.crt", "node.crt", "node.key"))


def ensure_security(store_dir: Path, hosts: tuple[str, ...] = ()) -> Path:
    """``security.toml`` and its certificates in ``store_dir``, generated once; returns the file.

    ``hosts``: the addresses a cluster's components run on (:mod:`storage.seaweed_cluster`), named
    in the certificate too, though weed checks only that a peer's certificate is of this CA."""
    store_dir = private_dir(store_dir)
    path = store_dir / SECURITY_FILE
    if _security_complete(store_dir):
        for p in (path, *(store_dir / TLS_DIR).iterdir()):
            os.chmod(p, FILE_MODE)
        return path
    tls = private_dir(store_dir / TLS_DIR)
    _write_tls(tls, hosts)
    write_atomic(path, security_toml(tls).encode())
    return path


def security_toml(tls: Path) -> str:
    """The text of ``security.toml``: fresh JWT keys, mutual TLS on every gRPC component."""
    lines = ["# generated by labwitness for this installation only; keep 0600 (storage/seaweed_secrets.py)"]
    for section in _JWT_SECTIONS:
        lines += [f"[{section}]", f'key = "{secrets.token_urlsafe(48)}"', "expires_after_seconds = 10", ""]
    # the volume server's status UI stays off; the filer returns no directory metadata
    lines += ["[access]", "ui = false", "", "[filer.expose_directory_metadata]", "enabled = false", ""]
    lines += ["[grpc]", f'ca = "{tls / "ca.crt"}"', ""]
    for comp in GRPC_COMPONENTS:
        lines += [f"[grpc.{comp}]", f'cert = "{tls / "node.crt"}"', f'key = "{tls / "node.key"}"', ""]
    # the admin server (its UI is off) gets a password anyway, in case a later weed serves more there
    lines += ["[admin]", 'user = "labwitness-admin"', f'password = "{secrets.token_urlsafe(32)}"', ""]
    return "\n".join(lines)


def _alt_names(hosts: tuple[str, ...]) -> list:
    import ipaddress

    from cryptography import x509

    names: dict[str, object] = {}
    for h in hosts:
        try:
            names[h] = x509.IPAddress(ipaddress.ip_address(h))
        except ValueError:
            names[h] = x509.DNSName(h)
    return list(names.values())


def _write_tls(tls: Path, hosts: tuple[str, ...] = ()) -> None:
    """A CA for this installation and one certificate (server and client) it signs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    until = now + dt.timedelta(days=365 * 50)  # the store outlives any retention period
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"labwitness store CA {secrets.token_hex(4)}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    node = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "labwitness-store")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), *_alt_names(("127.0.0.1", *hosts))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    write_atomic(tls / "ca.crt", ca.public_bytes(pem))
    write_atomic(tls / "node.crt", node.public_bytes(pem))
    write_atomic(tls / "node.key", key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    # the CA's key is not kept: nothing needs another certificate, and none can be made
