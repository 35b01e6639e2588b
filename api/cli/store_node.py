"""One component of the SeaweedFS storage cluster from the command line (docs/storage-cluster.md):

    labwitness store-node layout --out /etc/labwitness/store-cluster.json --base /var/lib/labwitness-store \\
        --secrets /etc/labwitness/store-secrets --masters 10.0.0.11 --volumes 10.0.0.11,10.0.0.12,10.0.0.13 \\
        --filer 10.0.0.11 --s3 10.0.0.11          # the layout file, the same on every machine
    labwitness store-node init --layout FILE      # the cluster's secrets (S3 identity, JWT keys, CA), once
    labwitness store-node run --layout FILE --component volume-2   # exec weed: what a systemd unit runs
    labwitness store-node command --layout FILE --component volume-2   # the command line it would run

The service itself needs nothing of this: it uses the cluster's S3 gateway as any external store
(``LABWITNESS_S3_ENDPOINT`` and the two keys ``init`` prints).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import console, fail
from labwitness.errors import LabwitnessError
from storage.seaweed import weed_env
from storage.seaweed_cluster import ClusterLayout, ensure_cluster_secrets, node_command, prepare_node
from storage.seaweed_secrets import IDENTITY_FILE

store_node_app = typer.Typer(help="对象存储集群组件 / a component of the SeaweedFS storage cluster", no_args_is_help=True)

LayoutOpt = Annotated[Path, typer.Option("--layout", envvar="LABWITNESS_STORE_LAYOUT", help="the cluster's layout file")]
ComponentOpt = Annotated[str, typer.Option("--component", help="e.g. master-1, volume-2, filer, s3")]


def _hosts(text: str) -> list[str]:
    return [h.strip() for h in text.split(",") if h.strip()]


@store_node_app.command("layout")
def layout(out: Annotated[Path, typer.Option("--out")], base: Annotated[Path, typer.Option("--base", help="data directory on each host")],
           secrets: Annotated[Path, typer.Option("--secrets", help="secrets directory, the same path on each host")],
           masters: Annotated[str, typer.Option("--masters", help="1 or 3 hosts, comma-separated")],
           volumes: Annotated[str, typer.Option("--volumes", help="3 or more hosts (one rack each)")],
           filer: Annotated[str, typer.Option("--filer")], s3: Annotated[str, typer.Option("--s3")],
           replication: Annotated[str, typer.Option("--replication")] = "010") -> None:
    """写出集群布局文件 / Write the cluster's layout file (weed's usual ports; edit it for others)."""
    try:
        lay = ClusterLayout.spread(base, secrets, masters=_hosts(masters), volumes=_hosts(volumes), filer=filer, s3=s3,
                                   replication=replication)
        lay.save(out)
    except (LabwitnessError, OSError) as e:
        fail(e)
    console.print(f"集群布局已写入 / layout written: {out}  (S3 {lay.s3_endpoint})")


@store_node_app.command("init")
def init(layout_file: LayoutOpt, show_secret: Annotated[bool, typer.Option("--show-secret")] = False) -> None:
    """生成集群密钥（已有则不变） / Make the cluster's secrets once; copy the directory to every host."""
    try:
        lay = ClusterLayout.load(layout_file)
        creds = ensure_cluster_secrets(lay)
    except (LabwitnessError, OSError) as e:
        fail(e)
    print(f"LABWITNESS_S3_ENDPOINT={lay.s3_endpoint}")
    print(f"LABWITNESS_S3_ACCESS_KEY={creds.access_key}")
    if show_secret:
        print(f"LABWITNESS_S3_SECRET_KEY={creds.secret_key}")
    else:
        console.print(f"# 密钥见 / the secret key is in {lay.secrets_dir / IDENTITY_FILE} (or run with --show-secret)")


@store_node_app.command("command")
def command(layout_file: LayoutOpt, component: ComponentOpt) -> None:
    """打印组件的命令行 / Print the component's weed command line (run it in the secrets directory)."""
    try:
        lay = ClusterLayout.load(layout_file)
        print(f"cd {shlex.quote(str(lay.secrets_dir))} && umask 077 && {shlex.join(node_command(lay, component))}")
    except LabwitnessError as e:
        fail(e)


@store_node_app.command("run")
def run(layout_file: LayoutOpt, component: ComponentOpt) -> None:
    """运行一个组件（替换本进程） / Run one component in the foreground: this process becomes weed."""
    try:
        lay = ClusterLayout.load(layout_file)
        args = prepare_node(lay, component)
    except (LabwitnessError, OSError) as e:
        fail(e)
    os.chdir(lay.secrets_dir)  # weed reads ./security.toml
    os.umask(0o077)
    os.execve(args[0], args, weed_env())
