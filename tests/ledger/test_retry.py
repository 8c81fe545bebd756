"""ledger.retry: which store errors are waited out, the backoff within the patience, and the client wrapper."""
import socket
import time

import pytest

from ledger import retry
from ledger.retry import RetryingClient, StoreUnavailable, call, describe, is_store_error, is_transient


def _mlflow_error(message, code):
    from mlflow.exceptions import MlflowException

    return MlflowException(message, error_code=code)


def _rest_error(code, message="x"):
    from mlflow.exceptions import RestException

    return RestException({"error_code": code, "message": message})


@pytest.mark.parametrize("exc", [
    ConnectionRefusedError("refused"),
    TimeoutError("timed out"),
    "API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/get failed with exception HTTPConnectionPool: "
    "Max retries exceeded (Caused by NewConnectionError: Connection refused)",
    "(sqlite3.OperationalError) database is locked",
    "(psycopg2.OperationalError) server closed the connection unexpectedly",
])
def test_outages_are_transient(exc):
    if isinstance(exc, str):
        exc = _mlflow_error(exc, 1 if "API request" in exc else 2)  # INTERNAL_ERROR, TEMPORARILY_UNAVAILABLE
    assert is_transient(exc)


def test_server_answers_503_and_500_are_transient_but_4xx_are_not():
    assert is_transient(_rest_error("TEMPORARILY_UNAVAILABLE"))
    assert not is_transient(_rest_error("RESOURCE_DOES_NOT_EXIST", "Run 'x' not found"))
    assert not is_transient(_rest_error("INVALID_PARAMETER_VALUE", "Changing param values is not allowed"))
    assert not is_transient(_rest_error("RESOURCE_ALREADY_EXISTS", "Experiment 'x' already exists"))


@pytest.mark.parametrize("text", ["(sqlite3.OperationalError) attempt to write a readonly database",
                                  "(sqlite3.OperationalError) database or disk is full",
                                  "(sqlite3.OperationalError) unable to open database file"])
def test_a_store_that_waiting_will_not_fix_is_not_transient(text):
    # MLflow raises these as TEMPORARILY_UNAVAILABLE, like a locked database.
    assert not is_transient(_mlflow_error(text, 2))
    assert not is_transient(OSError(28, "No space left on device"))


def test_call_retries_with_backoff_until_it_succeeds(monkeypatch):
    sleeps = []
    monkeypatch.setattr(retry.time, "sleep", sleeps.append)
    answers = iter([ConnectionRefusedError("down"), ConnectionRefusedError("down"), "ok"])

    def flaky():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert call(flaky, _patience=60) == "ok"
    assert sleeps == [1.0, 2.0]


def test_call_gives_up_after_the_patience_with_the_last_error(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(retry.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(retry.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    tries = []

    def down():
        tries.append(clock[0])
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(StoreUnavailable, match="no answer for .* tries of down") as info:
        call(down, _patience=30)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert tries == [0, 1, 3, 7, 15, 25, 29]  # 1, 2, 4, 8, then 10 s apart; the last wait cut to fit a try
    assert is_store_error(info.value) and not is_transient(info.value)


def test_permanent_errors_are_raised_at_once(monkeypatch):
    monkeypatch.setattr(retry.time, "sleep", lambda s: pytest.fail("slept on a permanent error"))

    def refused():
        raise _rest_error("RESOURCE_DOES_NOT_EXIST", "Run 'x' not found")

    with pytest.raises(Exception, match="not found"):
        call(refused)


def test_patience_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SWEEPER_STORE_PATIENCE", "7.5")
    assert retry.patience() == 7.5
    monkeypatch.setenv("SWEEPER_STORE_PATIENCE", "soon")
    assert retry.patience() == retry.PATIENCE


def test_describe_names_the_database_error_not_sqlalchemy_noise():
    try:
        try:
            raise __import__("sqlite3").OperationalError("attempt to write a readonly database")
        except Exception as inner:
            raise _mlflow_error("(raised as a result of Query-invoked autoflush; consider using a "
                                "session.no_autoflush block)\n(sqlite3.OperationalError) ...", 2) from inner
    except Exception as exc:
        assert describe(exc) == "OperationalError: attempt to write a readonly database"


def test_a_real_client_against_a_closed_port_gives_up_within_its_patience(monkeypatch):
    from mlflow import MlflowClient

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = RetryingClient(MlflowClient(f"http://127.0.0.1:{port}"), patience_s=5)
    began = time.monotonic()
    with pytest.raises(StoreUnavailable, match="4 tries of get_run"):
        client.get_run("0" * 32)
    assert 3.5 <= time.monotonic() - began < 20  # tries at 0, 1, 3 and 4 s (the last wait cut: 1 s left)
    assert client.tracking_uri.endswith(str(port))  # plain attributes pass through


def test_a_signal_waits_for_the_store_call_it_arrives_in(tmp_path):
    """SIGINT raised inside a SQLite write: the write commits, then KeyboardInterrupt is raised, and
    the store is not left locked for the cleanup's writes (the CI failure this fixes waited on
    'database is locked' for the whole patience)."""
    import os
    import signal

    from ledger.tracking import client

    c = client(f"sqlite:///{tmp_path}/m.db")
    exp = c.create_experiment("signals")
    run = c.create_run(exp)
    real = c.once.set_tag

    def set_tag_hit_by_ctrl_c(*args):
        os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode: inside the call
        real(*args)
        return "written"

    previous = signal.signal(signal.SIGINT, retry.deferring(signal.default_int_handler))
    try:
        with pytest.raises(KeyboardInterrupt):
            retry.call(set_tag_hit_by_ctrl_c, run.info.run_id, "k", "v", _shield=True)
        assert c.get_run(run.info.run_id).data.tags["k"] == "v"  # the write was not cut short
        c.set_tag(run.info.run_id, "cleanup", "done")  # and nothing holds the database's lock
        assert retry.call(lambda: "no signal", _shield=True) == "no signal"
        with pytest.raises(KeyboardInterrupt):  # outside a store call the handler runs at once
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
    finally:
        signal.signal(signal.SIGINT, previous)


def test_only_database_stores_hold_signals(tmp_path):
    from ledger.tracking import client

    assert client(f"sqlite:///{tmp_path}/m.db")._shield
    assert not retry.RetryingClient(object())._shield


def test_no_try_ends_past_the_deadline_when_later_tries_hang(monkeypatch):
    """The first try fails at once (connection refused), the later ones hang for their whole bound
    (a server that came back stuck): the last try is cut to the time left, so the call gives up by
    the patience, not a try's bound later."""
    clock = [0.0]
    monkeypatch.setattr(retry.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(retry.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    tries = []

    def stuck():
        bound = retry.try_bound()
        tries.append((clock[0], bound))
        if len(tries) == 1:
            raise ConnectionRefusedError("connection refused")
        clock[0] += bound  # waits its whole bound, then times out
        raise TimeoutError("timed out")

    with pytest.raises(StoreUnavailable):
        call(stuck, _patience=30)
    assert retry.try_seconds(30) == 7.5
    assert all(start + bound <= 30 for start, bound in tries), tries
    assert clock[0] <= 30 and tries[-1][1] >= retry.MIN_TRY, tries
    assert tries[-1][1] < 7.5, tries  # the last one was cut short (it would have ended past 30 s)


def test_a_call_inside_a_try_keeps_the_outer_deadline(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(retry.time, "monotonic", lambda: clock[0])
    seen = []

    def inner():
        seen.append(retry.remaining())
        return "ok"

    def outer():
        clock[0] += 4
        return call(inner, _patience=100)

    assert call(outer, _patience=10) == "ok"
    assert seen == [6.0]  # the outer call's 10 s, 4 of them spent
    assert retry.try_bound(10) == retry.try_seconds(10) and retry.remaining() == retry.patience()  # outside a call


def test_http_timeout_follows_the_time_left(monkeypatch):
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        if retry.os.environ.get(name) != retry._OURS.get(name):
            monkeypatch.delenv(name, raising=False)
    retry.bound_http_retries(40, seconds=3.7)
    assert retry.os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3"  # rounded down: it ends in time
    retry.bound_http_retries(40)
    assert retry.os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "10"
