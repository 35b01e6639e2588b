"""journal_outbox (the evidence tables' changes waiting for the locked bucket) and auditevent.mac

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 22:00:00

- ``journal_outbox``: filled in the writer's transaction by ``index.journal`` (an
  entry commits if and only if its change commits), drained by ``retention.journal``
  into ``journal/`` objects; ``labwitness index rebuild`` replays those.
- ``auditevent.mac``: HMAC of the event's hash with the installation's audit key (a
  file outside the database); rows written before are left NULL ("unkeyed").
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'journal_outbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('at_ms', sa.BigInteger(), nullable=False),
        sa.Column('body', sa.String(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('auditevent', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('auditevent', schema=None) as batch_op:
        batch_op.drop_column('mac')
    op.drop_table('journal_outbox')
