"""The ``labwitness`` command (Typer): the root app, composed here from one module per group.

    common       the exit-code rule, settings, who acts, JSON and table output
    run          record, serve, demo
    registry     discover, camera, area, equipment
    camera_time  camera time show, set-ntp, sync
    access       token, audit
    evidence     records import, export, verify
    maintenance  health, retention (sweep, verify, integrity, reconcile), index rebuild, db upgrade
    content      retention content, camera approve-reference
    report       report compliance
    key          key export, key list
    seal         seal now, seal verify
    store_node   store-node layout, init, run, command (a SeaweedFS cluster component)

Importing this package only builds Typer objects; a command's heavy dependencies
(av, cv2, uvicorn, the FastAPI app) are imported when it runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import typer

from api.cli import access, camera_time, content, evidence, key, maintenance, registry, report, run, seal, store_node
from api.cli.common import HELP as EXIT_HELP, CliGroup

app = typer.Typer(cls=CliGroup, help="labwitness — 检测区域录像留存与索引 / testing-area video retention and indexing",
                  epilog=EXIT_HELP, no_args_is_help=True, pretty_exceptions_enable=False)

for command in (run.record, run.serve, run.demo, registry.discover, evidence.export, evidence.verify, maintenance.health):
    app.command()(command)

maintenance.retention_app.command("content")(content.content)
registry.camera_app.command("approve-reference")(content.approve_reference)
registry.camera_app.add_typer(camera_time.time_app, name="time")

for name, group in (("db", maintenance.db_app), ("camera", registry.camera_app), ("area", registry.area_app),
                    ("equipment", registry.equipment_app), ("token", access.token_app), ("audit", access.audit_app),
                    ("records", evidence.records_app), ("retention", maintenance.retention_app),
                    ("index", maintenance.index_app), ("report", report.report_app), ("key", key.key_app),
                    ("seal", seal.seal_app), ("store-node", store_node.store_node_app)):
    app.add_typer(group, name=name)


def main() -> None:
    app()
