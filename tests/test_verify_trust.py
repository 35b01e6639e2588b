"""`labwitness verify` calls a package genuine only when its signer is the lab: a key
given with --public-key, or one the lab's published key list names and that was valid
when the package was made (api.trust).  A forged package signed with a fresh key, its
own public key inside, used to pass with exit 0."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from typer.testing import CliRunner

from api.cli import app as cli_app
from api.evidence import SigningKey
from api.keyring import well_known
from api.trust import trusted_pem

from evidencetools import dated_package, make_package


def _verify(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli_app, ["verify", *args], terminal_width=400)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, " ".join(r.output.split())


@pytest.fixture
def lab(tmp_path):
    """The lab's key, its published list (as GET /.well-known/labwitness-keys.json serves it) and
    `labwitness key export`'s PEM, and a package the lab signed."""
    d = tmp_path / "lab"
    d.mkdir()
    key = SigningKey.load(d)
    (tmp_path / "keys.json").write_text(json.dumps(well_known(d, key)))
    (tmp_path / "lab.pub").write_bytes(key.public_pem())
    return key, make_package(tmp_path, "genuine", key=key)


def test_a_forged_package_is_never_called_genuine(tmp_path, lab):
    key, genuine = lab
    forger = tmp_path / "forger"
    forger.mkdir()
    forged = dated_package(tmp_path, "forged", SigningKey.load(forger), "2026-12-01T00:00:00.000Z")
    # intact and validly signed by its own key: without a trusted key the issuer is unknown
    code, out = _verify(str(forged))
    assert code == 1 and "issuer unknown" in out and "genuine" not in out.replace("NOT genuine", "")
    code, out = _verify(str(forged), "--public-key", str(tmp_path / "lab.pub"))
    assert code == 1 and "NOT genuine" in out and "not the trusted lab key" in out
    code, out = _verify(str(forged), "--keys", str(tmp_path / "keys.json"))
    assert code == 1 and "not in the lab's published keys" in out
    # the lab's own package: genuine with its key or its list, unknown issuer without
    assert _verify(str(genuine))[0] == 1
    assert _verify(str(genuine), "--public-key", str(tmp_path / "lab.pub"))[0] == 0


def test_the_published_list_online_and_the_key_validity(tmp_path, lab):
    key, _ = lab
    doc = json.loads((tmp_path / "keys.json").read_text())
    inside = dated_package(tmp_path, "inside", key, "2099-01-01T00:00:00.000Z")
    before = dated_package(tmp_path, "before", key, "2000-01-01T00:00:00.000Z")
    body = json.dumps(doc).encode()

    class Keys(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200 if self.path == "/.well-known/labwitness-keys.json" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}/.well-known/labwitness-keys.json"
        code, out = _verify(str(inside), "--keys", url, "--json")
        assert code == 0 and json.loads(out)["genuine"] is True and json.loads(out)["issuer"] == "lab"
        code, out = _verify(str(before), "--keys", url)  # made before the key existed
        assert code == 1 and "not valid when the package was made" in out
        code, out = _verify(str(inside), "--keys", f"http://127.0.0.1:{srv.server_port}/nothing")
        assert code == 2 and "cannot read the key list" in out  # the caller's argument
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("key_list, key_id, created, ok, why", [
    ({"keys": [{"key_id": "K1", "public_key_pem": "P", "valid_from": "2026-01-01T00:00:00Z", "valid_until": None}]},
     "K1", "2026-06-01T00:00:00.000Z", True, ""),
    ({"keys": [{"key_id": "K1", "public_key_pem": "P", "valid_from": "2026-01-01T00:00:00Z",
                "valid_until": "2026-03-01T00:00:00Z"}]}, "K1", "2026-06-01T00:00:00.000Z", False, "not valid"),
    ({"keys": [{"key_id": "K1", "public_key_pem": "P", "valid_from": "2026-01-01T00:00:00Z", "valid_until": None}]},
     "K2", "2026-06-01T00:00:00.000Z", False, "not in the lab's published keys"),
    ({"keys": [{"key_id": "K1", "public_key_pem": "P", "valid_from": "2026-01-01T00:00:00Z", "valid_until": None}]},
     "K1", None, False, "created_at"),
    ({"nokeys": []}, "K1", "2026-06-01T00:00:00.000Z", False, "no \"keys\" list"),
])
def test_trusted_pem_table(key_list, key_id, created, ok, why):
    pem, reason = trusted_pem(key_list, key_id, created)
    assert (pem is not None) == ok and why in reason
