"""The lab's signing key from the command line:

    labwitness key export [--out lab.pub]   # the current public key, PEM: what `verify --public-key` trusts
    labwitness key list [--json]            # every published key, as GET /.well-known/labwitness-keys.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from api.cli.common import console, fail, print_json, settings_or_exit, table
from api.evidence import SigningKey
from api.keyring import published_keys, well_known
from labwitness.errors import LabwitnessError

key_app = typer.Typer(help="实验室签名密钥 / the lab's evidence-signing key", no_args_is_help=True)


@key_app.command("export")
def key_export(out: Annotated[Optional[Path], typer.Option("--out", help="write the PEM here (default: print it)")] = None) -> None:
    """导出实验室公钥（PEM） / Export the lab's public key (PEM) for `labwitness verify --public-key`.

    The key is created on first use, as the service does; the private key never leaves DATA_DIR/signing.key."""
    settings = settings_or_exit()
    try:
        key = SigningKey.load(settings.data_dir)
        published_keys(settings.data_dir, key)  # listed with its validity from now on, as the service lists it
    except (LabwitnessError, OSError) as e:
        fail(e)  # one line, exit 1
    pem = key.public_pem()
    if out is None:
        print(pem.decode(), end="")
        return
    out.write_bytes(pem)
    console.print(f"公钥已导出 / public key written: {out}  ({key.fingerprint})")


@key_app.command("list")
def key_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """列出已发布的公钥及有效期 / List the published keys with their validity."""
    settings = settings_or_exit()
    try:
        doc = well_known(settings.data_dir)
    except (LabwitnessError, OSError) as e:
        fail(e)  # one line, exit 1
    if json_out:
        print_json(doc)
    else:
        table("签名公钥 / signing keys", ["key id", "algorithm", "valid from", "valid until"],
              [[k["key_id"], k["algorithm"], k["valid_from"], k["valid_until"] or "—"] for k in doc["keys"]])
