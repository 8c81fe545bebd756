"""Exit codes and messages of ``sweeper``: bad input 2, store or cluster 4, internal 70, Ctrl-C 130.

Every case prints one line on stderr naming what is wrong, never a traceback.
"""
from pathlib import Path

import pytest

from sweeper.app import cli
from sweeper.app.cli import main

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = str(REPO / "sweeps" / "quickstart.yaml")


def one_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("value, expected", [
    ("[1, 2", "--set depth: not a value: YAML syntax error: expected ',' or ']'"),
    ("&a [*a]", "--set depth: not a value: recursive alias *a"),
    ("\x01", "--set depth: not a value: control character U+0001"),
    ("!!int x", "--set depth: not a value: YAML error: cannot read 'x' as int"),
    ("100000", "--set depth: Input should be at most 2048"),
    (".inf", "--set depth: Input should be a valid integer"),
])
def test_train_set_with_broken_value_is_bad_input(value, expected, capsys):
    assert main(["train", QUICKSTART, "--set", f"depth={value}"]) == 2
    assert expected in one_line(capsys)


def test_train_set_learning_rate_must_be_finite(capsys):
    assert main(["train", QUICKSTART, "--set", "learning_rate=.nan"]) == 2
    assert "--set learning_rate: Input should be a finite number" in one_line(capsys)


@pytest.mark.parametrize("save, expected", [
    (".", "is a folder"), ("missing-folder/w.npz", "the folder missing-folder does not exist")])
def test_train_save_must_be_a_writable_file(save, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", QUICKSTART, "--save", save]) == 2
    assert expected in one_line(capsys)


def test_train_repeat_is_bounded(capsys):
    assert main(["train", QUICKSTART, "--repeat", "1000000000"]) == 2
    assert "must be between 0 and 999" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["status"], ["report"], ["resume"]])
@pytest.mark.parametrize("name", ["..", ".", "../../x", "a/b", "x" * 5000, "a\nb", "a b"])
def test_names_on_the_command_line_are_checked_first(command, name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(command + [name, "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    line = one_line(capsys)
    assert line.startswith(f"sweeper {command[0]}: ") and "sweep name" in line
    assert list(tmp_path.iterdir()) == []  # nothing written, no store created


@pytest.mark.parametrize("command", ["status", "report"])
def test_a_bad_sweep_file_in_place_of_a_name_exits_2_naming_it(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmethod: bogus\n")
    assert main([command, str(bad), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    line = one_line(capsys)
    assert line.startswith(str(bad)) and "method" in line and "(line 2)" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_report_out_must_be_a_writable_folder(capsys, tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    for out in (afile, afile / "below"):
        assert main(["report", "some-sweep", "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--out", str(out)]) == 2
        assert f"--out {out}: {afile} is not a folder" in one_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize("argv", [["status", "some-sweep"], ["plan", QUICKSTART]])
def test_unreachable_store_exits_4_naming_it(argv, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("SWEEPER_STORE_PATIENCE", "3")  # the outage patience (120 s by default)
    assert main(argv + ["--tracking-uri", "http://127.0.0.1:9"]) == 4
    assert f"sweeper {argv[0]}: the tracking store http://127.0.0.1:9 could not be used: " in one_line(capsys)


def test_unreachable_ray_address_exits_4_naming_it(tmp_path):
    """Ray itself retries a dead address for minutes, printing warnings; we say so in seconds.

    In a child process: this test session's own Ray is already initialised, and a process that has
    Ray running uses it (as the in-process API does), whatever ``--address`` says."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(SWEEPER_RAY_CONNECT_TIMEOUT="2", PYTHONPATH=str(REPO))
    cli = [sys.executable, "-m", "sweeper"]
    run = subprocess.run([*cli, "run", QUICKSTART, "-q", "--address", f"127.0.0.1:{port}"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 4, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert f"the Ray cluster (127.0.0.1:{port}) could not be used: nothing answers at 127.0.0.1:{port}" in line
    status = subprocess.run([*cli, "status", "quickstart"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert status.returncode == 0, status.stderr  # the submission is closed, not left RUNNING
    assert "FAILED" in status.stdout


def test_corrupt_store_exits_4(capsys, tmp_path):
    (tmp_path / "m.db").write_text("not a database\n" * 100)
    assert main(["status", "some-sweep", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 4
    line = one_line(capsys)
    assert f"the tracking store sqlite:///{tmp_path}/m.db could not be used" in line and "not a database" in line


def test_unexpected_error_is_one_line_unless_debugging(capsys, monkeypatch):
    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(cli.COMMANDS, "validate", cli.Command("validate", "x", broken, cli.COMMANDS["validate"].arguments))
    assert main(["validate", QUICKSTART]) == 70
    assert one_line(capsys) == ("sweeper validate: internal error: ZeroDivisionError: division by zero "
                                "(a bug; SWEEPER_DEBUG=1 prints the traceback)")
    monkeypatch.setenv("SWEEPER_DEBUG", "1")
    assert main(["validate", QUICKSTART]) == 70
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err


def test_ctrl_c_exits_130(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "validate", cli.Command("validate", "x", interrupted, cli.COMMANDS["validate"].arguments))
    assert main(["validate", QUICKSTART]) == 130
    assert one_line(capsys) == "sweeper validate: interrupted"


def test_help_lists_exit_codes(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130", "143"):
        assert f"\n  {code}" in out
    assert main(["run", "--help"]) == 0
    assert "the tracking store (MLflow) or the Ray cluster could not be used" in capsys.readouterr().out


@pytest.mark.parametrize("path, expected", [
    ("/dev/zero", "is a character device, not a sweep file"),
    ("/", "is a directory, not a sweep file"),
])
def test_files_that_are_not_sweep_files(path, expected, capsys):
    assert main(["validate", path]) == 2
    assert one_line(capsys) == f"{path}: {expected}" + (" (a regular file is needed)" if "device" in expected else "")


def test_fifo_and_binary_and_oversized_files(capsys, tmp_path):
    import os

    from sweeper.spec.safeyaml import MAX_FILE_BYTES

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    assert main(["validate", str(fifo)]) == 2
    assert "is a FIFO, not a sweep file" in one_line(capsys)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    assert main(["validate", str(latin)]) == 2
    assert "not UTF-8 text: byte 0xe9 at line 1, column 10" in one_line(capsys)
    big = tmp_path / "big.yaml"
    big.write_text("name: big\n" + "# padding\n" * (MAX_FILE_BYTES // 10))
    assert main(["validate", str(big)]) == 2
    assert f"larger than {MAX_FILE_BYTES} bytes" in one_line(capsys)
