"""A PostgreSQL store given directly as the tracking URI: a statement that does not come back is
cut at the try's bound (``statement_timeout``), so the store's patience holds there too.

Runs against the cluster's own PostgreSQL (scripts/cluster.sh: ``$CLUSTER_DIR/settings`` and
``pg_password``). Skipped unless ``SWEEPER_CLUSTER=1``."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ledger import retry

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(os.environ.get("SWEEPER_CLUSTER") != "1",
                       reason="needs a running cluster: scripts/cluster.sh up, its env, and SWEEPER_CLUSTER=1"),
]


def postgres_uri() -> str:
    state = Path(os.environ.get("CLUSTER_DIR", ".cluster"))
    settings = dict(line.split("=", 1) for line in (state / "settings").read_text().split() if "=" in line)
    port = os.environ.get("CLUSTER_PG_PORT") or settings.get("SAVED_PG_PORT", "55432")
    password = (state / "pg_password").read_text().strip()
    return f"postgresql+psycopg2://mlflow:{password}@127.0.0.1:{port}/mlflow"


def test_a_stuck_statement_ends_at_the_try_bound(monkeypatch):
    import sqlalchemy

    monkeypatch.setenv("SWEEPER_STORE_PATIENCE", "8")  # a try bound of 2 s
    retry.bound_sqlite_waits()
    engine = sqlalchemy.create_engine(postgres_uri())
    started = time.monotonic()
    with pytest.raises(sqlalchemy.exc.OperationalError) as caught:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_sleep(60)"))
    waited = time.monotonic() - started
    assert "statement timeout" in str(caught.value) and retry.is_transient(caught.value)
    assert 1.5 < waited < 6, waited
    with engine.connect() as conn:  # the next session works, with its own bound
        assert conn.execute(sqlalchemy.text("SHOW statement_timeout")).scalar() == "2s"
    engine.dispose()
