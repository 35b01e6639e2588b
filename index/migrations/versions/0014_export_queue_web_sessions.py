"""export queue columns on export_package; web sessions in the database

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-04 12:40:00

Exports are queued rows that any jobs node's worker claims (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL), heartbeats and, when its heartbeat goes stale, another
claims again (docs/jobs.md).  Web sessions move from one process's memory into
``web_session``: hashes and the token's row id only, so every API node serves them
and a restart keeps them.  Expand-only: an older node ignores the new columns and
the new table.  (``down_revision`` is relinked at merge; see docs/jobs.md.)
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0014'
down_revision = '0013'  # relinked in branch topo (the lead relinks the chain at merge)
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('export_package', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('heartbeat_at_ms', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('base_url', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False,
                                      server_default=''))
        batch_op.create_index('ix_export_package_status', ['status'], unique=False)
    op.create_table(
        'web_session',
        sa.Column('id_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('token_id', sa.Integer(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('csrf', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column('created_ms', sa.BigInteger(), nullable=False),
        sa.Column('last_seen_ms', sa.BigInteger(), nullable=False),
        sa.Column('expires_ms', sa.BigInteger(), nullable=False),
        sa.Column('flash', sqlmodel.sql.sqltypes.AutoString(length=8000), nullable=False),
        sa.PrimaryKeyConstraint('id_hash'),
    )
    op.create_index('ix_web_session_token_id', 'web_session', ['token_id'], unique=False)
    op.create_index('ix_web_session_expires_ms', 'web_session', ['expires_ms'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_web_session_expires_ms', table_name='web_session')
    op.drop_index('ix_web_session_token_id', table_name='web_session')
    op.drop_table('web_session')
    with op.batch_alter_table('export_package', schema=None) as batch_op:
        batch_op.drop_index('ix_export_package_status')
        batch_op.drop_column('base_url')
        batch_op.drop_column('role')
        batch_op.drop_column('attempts')
        batch_op.drop_column('heartbeat_at_ms')
        batch_op.drop_column('claimed_by')
