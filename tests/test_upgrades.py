"""Rolling upgrades (docs/upgrades.md): migrations from EXPAND_FROM on only expand unless marked
``CONTRACT``; a node of the previous release (the schema as of revision 0012) still writes and reads
against the upgraded database; two nodes upgrading at once take turns (PostgreSQL advisory lock)."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, insert, inspect, select, text

from conftest import wait_for
from index.db import make_engine
from index.migrate import UPGRADE_LOCK, current, upgrade
from index.models import Segment
from index.queries import IndexStore

VERSIONS = Path(__file__).resolve().parents[1] / "index" / "migrations" / "versions"
#: the first revision under the expand/contract rule (the release before it is the "previous release")
EXPAND_FROM = "0013"
PREVIOUS = "0012"

#: Alembic operations that break a node still running the previous release's code
CONTRACT_OPS = {"drop_column", "drop_table", "rename_table", "drop_constraint"}
#: raw SQL that does the same
CONTRACT_SQL = ("DROP TABLE", "DROP COLUMN", "RENAME ", "SET NOT NULL", " TYPE ", "DROP CONSTRAINT")


def _kw(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords if k.arg}


def _false(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _text(node: ast.expr) -> str | None:
    """A string constant, or an f-string with its holes as ``{}`` (SQL is often built with table names)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def contract_operations(source: str) -> list[str]:
    """What a migration does on the way up that an older node could not live with: everything in the
    module but ``downgrade()`` counts (helpers that ``upgrade()`` calls included)."""
    tree = ast.parse(source)
    found: list[str] = []
    inside_fstring: set[int] = set()
    for top in (n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name == "downgrade")):
        for node in ast.walk(top):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name, kw = node.func.attr, _kw(node)
                if name in CONTRACT_OPS:
                    found.append(f"{name} (line {node.lineno})")
                elif name == "alter_column" and ("new_column_name" in kw or "type_" in kw
                                                 or (_false(kw.get("nullable")) and "server_default" not in kw)):
                    found.append(f"alter_column {', '.join(sorted(kw))} (line {node.lineno})")
                elif name == "add_column":
                    col = node.args[-1] if node.args else None
                    ckw = _kw(col) if isinstance(col, ast.Call) else {}
                    if _false(ckw.get("nullable")) and "server_default" not in ckw:
                        found.append(f"add_column NOT NULL without server_default (line {node.lineno})")
            if isinstance(node, ast.JoinedStr):
                inside_fstring.update(id(v) for v in node.values)
            text_ = _text(node) if id(node) not in inside_fstring else None
            if text_ is not None:
                sql = " ".join(text_.upper().split())
                for bad in CONTRACT_SQL:
                    if bad in sql and any(w in sql for w in ("ALTER ", "DROP ")):
                        found.append(f"SQL {bad.strip()!r} (line {node.lineno})")
    return found


def contract_reason(source: str) -> str | None:
    for n in ast.parse(source).body:
        if (isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "CONTRACT" for t in n.targets)
                and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str) and n.value.value.strip()):
            return n.value.value
    return None


LINT_CASES = [
    ("op.add_column('segment', sa.Column('epoch', sa.BigInteger(), nullable=True))", []),
    ("op.add_column('segment', sa.Column('epoch', sa.BigInteger(), nullable=False, server_default='0'))", []),
    ("op.create_table('cluster_node', sa.Column('node_id', sa.String(48), primary_key=True))", []),
    ("op.create_index('ix_x', 'segment', ['camera_id'], postgresql_concurrently=True)", []),
    ("op.add_column('segment', sa.Column('epoch', sa.BigInteger(), nullable=False))", ["add_column"]),
    ("op.drop_column('segment', 'recorder_id')", ["drop_column"]),
    ("op.drop_table('gap')", ["drop_table"]),
    ("op.rename_table('gap', 'gaps')", ["rename_table"]),
    ("op.alter_column('segment', 'key', new_column_name='object_key')", ["alter_column"]),
    ("op.alter_column('segment', 'size', type_=sa.Integer())", ["alter_column"]),
    ("op.alter_column('segment', 'lock_mode', nullable=False)", ["alter_column"]),
    ("op.alter_column('segment', 'lock_mode', nullable=False, server_default='')", []),
    ("with op.batch_alter_table('camera') as b:\n        b.drop_column('name')", ["drop_column"]),
    ("op.execute('ALTER TABLE segment DROP COLUMN recorder_id')", ["SQL"]),
    ("conn.execute(sa.text('DROP TABLE \"gap\"'))", ["SQL"]),
    ("op.execute('ALTER TABLE segment ALTER COLUMN size TYPE integer')", ["SQL"]),
    ("op.execute('CREATE INDEX CONCURRENTLY ix_y ON segment (end_ms)')", []),
    ("conn.execute(sa.text(f'ALTER TABLE \"{new}\" RENAME TO \"{table}\"'))", ["SQL"]),
    ("_swap(conn)\n\ndef _swap(conn):\n    conn.execute(sa.text(f'DROP TABLE {t}'))", ["SQL"]),
]


@pytest.mark.parametrize("body, expect", LINT_CASES)
def test_the_lint_finds_contract_operations(body, expect):
    src = f"def upgrade():\n    {body}\n\ndef downgrade():\n    op.drop_table('anything')\n"
    found = contract_operations(src)
    assert [f.split()[0] for f in found][:1] == expect, found


def test_contract_marker_needs_a_reason():
    assert contract_reason("CONTRACT = 'drops segment.recorder_id, unused since 0013 (release 2026.12)'\n")
    assert contract_reason("CONTRACT = ''\n") is None
    assert contract_reason("CONTRACT = True\n") is None  # a reason, not a flag
    assert contract_reason("x = 1\n") is None


def test_migrations_from_the_marker_on_only_expand_unless_marked_contract():
    checked = 0
    for path in sorted(VERSIONS.glob("*.py")):
        if path.name[:4] < EXPAND_FROM:
            continue
        src = path.read_text()
        checked += 1
        found = contract_operations(src)
        assert not found or contract_reason(src), (
            f"{path.name} contracts the schema ({'; '.join(found)}) while nodes of the previous release may still "
            f"run: move it to the next release, or mark it CONTRACT = '<why every node already runs the new code>' "
            f"(docs/upgrades.md)")
    # every revision file is named by its number, so none escapes the comparison with EXPAND_FROM
    assert all(p.name[:4].isdigit() for p in VERSIONS.glob("*.py"))
    assert checked == len([p for p in VERSIONS.glob("*.py") if p.name[:4] >= EXPAND_FROM])


def _old_schema(pg_url: str) -> MetaData:
    """The tables as the previous release's code knows them: a scratch database migrated to PREVIOUS, reflected."""
    scratch = pg_url.rsplit("/", 1)[0] + "/" + pg_url.rsplit("/", 1)[1] + "_old"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    name = scratch.rsplit("/", 1)[1]
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        eng = make_engine(scratch)
        upgrade(eng, PREVIOUS)
        md = MetaData()
        md.reflect(eng)
        eng.dispose()
        return md
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_previous_release_node_works_against_the_upgraded_schema(pg_url):
    old = _old_schema(pg_url)
    engine = make_engine(pg_url)
    upgrade(engine)
    # (in a release that added no migration since PREVIOUS this compares 0012 with itself, and still must pass)
    new = inspect(engine)
    # 1. every column the old code selects or inserts is still there; every column it does not know
    #    can be left out of an INSERT (nullable, server default or identity)
    for t in old.sorted_tables:
        if t.name == "alembic_version":
            continue
        cols = {c["name"]: c for c in new.get_columns(t.name)}
        missing = [c.name for c in t.columns if c.name not in cols]
        assert not missing, f"{t.name}: columns the previous release uses are gone: {missing}"
        unknown = [n for n, c in cols.items() if n not in t.columns and not c["nullable"]
                   and c.get("default") is None and not c.get("autoincrement") and not c.get("identity")]
        assert not unknown, f"{t.name}: NOT NULL columns without default the previous release cannot fill: {unknown}"
    # 2. the old node writes a segment and a gap the way its ORM does (every column it knows, explicitly)
    seg, gap = old.tables["segment"], old.tables["gap"]
    now = int(time.time() * 1000)
    row = {c.name: None for c in seg.columns if c.name != "id"}
    row.update(camera_id="old-node", start_ms=now - 60_000, end_ms=now, media_duration_ms=60_000,
               key="v1/old-node/seg.mp4", version_id="v1", size=1234, sha256="a" * 64, codec="h264", audio_codec="",
               width=1920, height=1080, frames=1500, session_id="s", sequence=1, recorder_id="old-node",
               status="stored", retain_until_ms=now + 190 * 86_400_000, lock_mode="COMPLIANCE")
    with engine.begin() as c:
        c.execute(insert(seg).values(**row))
        c.execute(insert(gap).values(camera_id="old-node", start_ms=now - 70_000, end_ms=now - 60_000,
                                     reason="timeout", detail="", seal_seq=None))
    # 3. the new code reads what the old node wrote, and writes rows the old node reads back
    ix = IndexStore(engine)
    fp = ix.footage("old-node", now - 120_000, now + 1000)
    assert [s.key for s in fp.segments] == ["v1/old-node/seg.mp4"]
    assert [g.reason for g in ix.gaps("old-node")] == ["timeout"]
    ix.add_segment(Segment(camera_id="old-node", start_ms=now, end_ms=now + 60_000, media_duration_ms=60_000,
                           key="v1/old-node/new.mp4", version_id="v2", size=99, sha256="b" * 64))
    with engine.connect() as c:
        keys = c.execute(select(seg.c.key, seg.c.size).where(seg.c.camera_id == "old-node").order_by(seg.c.start_ms)).all()
    assert keys == [("v1/old-node/seg.mp4", 1234), ("v1/old-node/new.mp4", 99)]
    engine.dispose()


def test_two_nodes_upgrading_at_once_take_turns(pg_url):
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def node():
        eng = make_engine(pg_url)
        try:
            barrier.wait()
            upgrade(eng)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)
        finally:
            eng.dispose()

    threads = [threading.Thread(target=node) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    eng = make_engine(pg_url)
    head = current(eng)
    assert head is not None
    with eng.connect() as c:
        assert c.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    eng.dispose()


def test_an_upgrade_waits_while_another_node_holds_the_lock(pg_url):
    holder = create_engine(pg_url)
    eng = make_engine(pg_url)
    done = threading.Event()
    with holder.connect() as c:
        c.execute(text("SELECT pg_advisory_lock(:k)"), {"k": UPGRADE_LOCK})
        c.commit()
        t = threading.Thread(target=lambda: (upgrade(eng), done.set()))
        t.start()
        # the second upgrader is seen waiting on the very lock, and has created nothing
        wait_for(lambda: c.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))
                 .scalar() == 1, 30, what="the upgrade waiting for the lock")
        assert not done.is_set()
        assert "alembic_version" not in inspect(holder).get_table_names()
        c.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": UPGRADE_LOCK})
        c.commit()
    t.join(120)
    assert done.is_set()
    assert current(eng) is not None
    eng.dispose()
    holder.dispose()
