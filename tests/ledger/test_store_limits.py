"""The ledger's name limits are MLflow's SQL columns, read from the installed MLflow: SQLite does not
enforce a VARCHAR's length, PostgreSQL and MySQL do, so the limits must be the columns' own."""
import pytest

from ledger import schema


def _length(model, column: str) -> int:
    return model.__table__.columns[column].type.length


def test_limits_are_mlflows_columns():
    from mlflow.store.tracking.dbmodels import models as m

    assert _length(m.SqlExperiment, "name") == schema.MAX_EXPERIMENT_NAME
    assert _length(m.SqlRun, "name") == schema.MAX_RUN_NAME
    for model in (m.SqlTag, m.SqlParam, m.SqlMetric, m.SqlLatestMetric, m.SqlExperimentTag):
        assert _length(model, "key") == schema.MAX_KEY
    assert _length(m.SqlTag, "value") >= schema.MAX_TAG_VALUE
    assert _length(m.SqlParam, "value") >= schema.MAX_PARAM_VALUE


def test_every_name_the_ledger_writes_fits():
    names = [getattr(schema, n) for n in dir(schema) if n.isupper() and isinstance(getattr(schema, n), str)]
    assert names and max(map(len, names)) <= schema.MAX_KEY


@pytest.mark.parametrize("uri, shown", [
    ("postgresql+psycopg2://mlflow:s3cret@db:5432/mlflow", "postgresql+psycopg2://mlflow:***@db:5432/mlflow"),
    ("http://user:p%40ss@127.0.0.1:5000", "http://user:***@127.0.0.1:5000"),
    ("postgresql://mlflow@db/mlflow", "postgresql://mlflow@db/mlflow"),
    ("sqlite:////tmp/m.db", "sqlite:////tmp/m.db"),
    ("http://[::1", "http://[::1"),  # unparseable: shown as given
])
def test_a_password_in_a_store_uri_is_never_shown(uri, shown):
    from ledger.tracking import shown_uri

    assert shown_uri(uri) == shown


def test_status_and_errors_hide_the_store_password(capsys, monkeypatch):
    from sweeper.app.cli import main

    monkeypatch.setenv("SWEEPER_STORE_PATIENCE", "1")
    uri = "postgresql+psycopg2://mlflow:s3cret@127.0.0.1:1/mlflow"  # nothing listens on port 1
    assert main(["status", "some-sweep", "--tracking-uri", uri]) == 4
    err = capsys.readouterr().err
    assert "s3cret" not in err and "mlflow:***@127.0.0.1:1" in err
