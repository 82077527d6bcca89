"""Every list the consoles and the portal poll is read by an index, in keyset order (issue 27).

- alerts: the per-resident, per-site and per-state indexes end in ``id DESC`` too, so a page that
  starts after a cursor ``(opened_at, id)`` is a range of the index, however deep it is (``OFFSET``
  read and threw away every row before the page).
- audit_log: by resident and by user in ``id`` order, the order ``GET /audit`` pages in.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ALERT_INDEXES = (("alerts_resident_opened", "resident_id"), ("alerts_site_opened", "site_id"),
                 ("alerts_state_opened", "state"))  # fmt: skip


def upgrade() -> None:
    for name, column in ALERT_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
        op.execute(f"CREATE INDEX {name} ON alerts ({column}, opened_at DESC, id DESC)")
    op.execute("DROP INDEX IF EXISTS audit_log_resident_at")
    op.execute("DROP INDEX IF EXISTS audit_log_user_at")
    op.execute("CREATE INDEX audit_log_resident_id ON audit_log (resident_id, id DESC)")
    op.execute("CREATE INDEX audit_log_user_id ON audit_log (user_id, id DESC)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS audit_log_user_id")
    op.execute("DROP INDEX IF EXISTS audit_log_resident_id")
    op.execute("CREATE INDEX audit_log_resident_at ON audit_log (resident_id, at DESC)")
    op.execute("CREATE INDEX audit_log_user_at ON audit_log (user_id, at DESC)")
    for name, column in ALERT_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
        op.execute(f"CREATE INDEX {name} ON alerts ({column}, opened_at DESC)")
