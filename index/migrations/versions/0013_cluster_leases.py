"""cluster_node and camera_lease: nodes and the camera leases of recorder nodes; writer's node and epoch on segments and gaps

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 12:50:00

Issue 16 §2 (docs/cluster.md): every node heartbeats a ``cluster_node`` row; a
recorder node records a camera only while it holds that camera's
``camera_lease`` row, whose ``epoch`` (a fencing counter) grows by one on each
new claim.  Segments and gaps carry the writer's ``node_id`` and ``epoch``:
nullable and additive, so old rows and single-box installations are untouched
and a node of the previous version keeps writing (expand step of an
expand/contract upgrade).
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'cluster_node',
        sa.Column('node_id', sa.String(length=48), primary_key=True),
        sa.Column('roles', sa.String(length=64), nullable=False, server_default=''),
        sa.Column('host', sa.String(length=255), nullable=False, server_default=''),
        sa.Column('pid', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('version', sa.String(length=32), nullable=False, server_default=''),
        sa.Column('started_at_ms', sa.BigInteger(), nullable=False),
        sa.Column('heartbeat_at_ms', sa.BigInteger(), nullable=False),
        sa.Column('stopped_at_ms', sa.BigInteger(), nullable=True),
    )
    op.create_table(
        'camera_lease',
        sa.Column('camera_id', sa.String(length=64), primary_key=True),
        sa.Column('node_id', sa.String(length=48), nullable=True),  # None: released, free to claim at once
        sa.Column('epoch', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('claimed_at_ms', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('renewed_at_ms', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('expires_at_ms', sa.BigInteger(), nullable=False, server_default='0'),
        # the holder before this epoch, and how it ended: "" (first claim) | expired | released
        sa.Column('prev_node_id', sa.String(length=48), nullable=False, server_default=''),
        sa.Column('prev_end', sa.String(length=16), nullable=False, server_default=''),
        sa.Column('failovers', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('last_failover_ms', sa.BigInteger(), nullable=True),
        sa.Column('handovers', sa.BigInteger(), nullable=False, server_default='0'),
    )
    op.create_index('ix_camera_lease_node', 'camera_lease', ['node_id'])
    for table in ('segment', 'gap'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('node_id', sa.String(length=48), nullable=True))
            batch_op.add_column(sa.Column('epoch', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for table in ('gap', 'segment'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('epoch')
            batch_op.drop_column('node_id')
    op.drop_index('ix_camera_lease_node', table_name='camera_lease')
    op.drop_table('camera_lease')
    op.drop_table('cluster_node')
