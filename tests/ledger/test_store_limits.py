"""The ledger's name limits are MLflow's SQL columns, read from the installed MLflow: SQLite does not
enforce a VARCHAR's length, PostgreSQL and MySQL do, so the limits must be the columns' own."""
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
