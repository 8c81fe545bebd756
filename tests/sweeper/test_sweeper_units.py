"""Small pieces of the sweep service, without Ray or MLflow servers."""
import io
import struct
import zlib

import numpy as np
import pytest

from sweeper.trials.asha import LocalCoordinator, Rungs
from sweeper.trials.pictures import kernel_grid, kernels_png
from sweeper.app.progress import Progress
from sweeper.trials.counts import Counts
from ledger.schema import knob_params
from ledger.tracking import resolve_tracking_uri
from sweeper.trials.trial import error_signature


def test_asha_rungs_keep_the_best_third():
    rungs = Rungs("val_accuracy", "max", grace_epochs=1, reduction_factor=3, max_epochs=9)
    assert rungs.milestones == [1, 3]
    # The first trial at a rung always goes on; later ones only if in the top third so far.
    assert rungs.decide("a", 1, {"val_accuracy": 0.5})
    assert not rungs.decide("b", 1, {"val_accuracy": 0.4})
    assert rungs.decide("c", 1, {"val_accuracy": 0.9})
    assert rungs.decide("a", 2, {"val_accuracy": 0.1})  # not a rung
    assert rungs.decide("z", 9, {"val_accuracy": 0.0})  # the last epoch is no rung


def test_asha_min_mode_for_loss():
    rungs = Rungs("val_loss", "min", grace_epochs=2, reduction_factor=2, max_epochs=8)
    assert rungs.milestones == [2, 4]
    assert rungs.decide("a", 2, {"val_loss": 1.0})
    assert rungs.decide("b", 2, {"val_loss": 0.5})
    assert not rungs.decide("c", 2, {"val_loss": 2.0})


def test_coordinator_without_rule_never_stops():
    coord = LocalCoordinator(None)
    assert all(coord.report(("h", 0), epoch, {"val_accuracy": 0.0}) for epoch in range(1, 20))


def test_error_signature_blanks_numbers():
    a = error_signature(FloatingPointError("loss is nan at epoch 1, step 3"))
    b = error_signature(FloatingPointError("loss is nan at epoch 2, step 17"))
    assert a == b == "FloatingPointError: loss is nan at epoch #, step #"
    assert error_signature(ValueError("x")) != a


def test_each_knob_is_one_param_under_its_sweep_file_name_and_none_is_left_out():
    config = {"seed": 0, "model": {"depth": 8, "dense": [64, 32], "pool_stride": None},
              "train": {"learning_rate": 0.001}, "data": {"source": "bundled", "path": None}}
    assert knob_params(config) == {"seed": "0", "depth": "8", "dense": "[64, 32]", "learning_rate": "0.001",
                                   "data.source": "bundled"}


def test_relative_sqlite_uri_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def _png_pixels(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks[kind] = body
        pos += 12 + length
    w, h = struct.unpack(">II", chunks[b"IHDR"][:8])
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[i * (w + 1) + 1:(i + 1) * (w + 1)] for i in range(h)]
    return np.frombuffer(b"".join(rows), np.uint8).reshape(h, w)


def test_kernel_picture_is_a_valid_png_of_the_tiles():
    w = np.random.default_rng(0).standard_normal((4, 1, 3, 3))
    pixels = _png_pixels(kernels_png(w))
    np.testing.assert_array_equal(pixels, kernel_grid(w))
    assert pixels.shape == (1 * (66 + 4) + 4, 4 * (66 + 4) + 4)  # 3x3 kernels enlarged 22x


def test_kernel_picture_wraps_many_filters_into_readable_rows():
    w = np.random.default_rng(0).standard_normal((32, 1, 7, 7))
    h, wide = kernel_grid(w).shape
    assert (h, wide) == (4 * (70 + 4) + 4, 8 * (70 + 4) + 4)  # 8 filters a row, 70 px tiles
    assert kernel_grid(np.ones((3, 2, 5, 5))).shape == (2 * (65 + 4) + 4, 3 * (65 + 4) + 4)


def test_counts_always_add_up():
    counts = Counts(5, {"done_before": 1})
    counts.state["queued"] = 4
    counts.move("queued", "running")
    counts.move("running", "failed")
    counts.check()
    assert counts.as_dict()["planned"] == 5
    with pytest.raises(AssertionError):
        counts.move("queued", "running", 9)
        counts.check()


def test_progress_quiet_prints_only_events():
    out = io.StringIO()
    progress = Progress(out, quiet=True)
    progress.update(Counts(1, {"queued": 1}), "", None)
    progress.event("FAILED k3 #1: boom")
    assert out.getvalue() == "FAILED k3 #1: boom\n"


def test_progress_line_names_the_best_point_by_the_selection_rule():
    """The live line applies ledger.selection: mean of the sweep's validation metric over repeats."""
    from types import SimpleNamespace

    from sweeper.plan.points import make_plan
    from sweeper.trials.executor import Runner
    from sweeper.trials.trial import TrialOutcome
    from sweeper.spec.config import parse_sweep

    for selection, expected in (({}, "val_accuracy 0.9000 (k5)"), ({"metric": "val_loss"}, "val_loss 0.1500 (k3)")):
        config = parse_sweep({"name": "t", "repeats": 2, "grid": {"kernel_size": [3, 5]}, "selection": selection})
        plan = make_plan(config, flops_per_cpu=1e9)
        runner = Runner(plan, SimpleNamespace(tracker=None, experiment_id="0"))
        values = {("k3", 0): (0.95, 0.80, 0.2), ("k3", 1): (0.70, 0.99, 0.1), ("k5", 0): (0.90, 0.10, 0.5),
                  ("k5", 1): (0.90, 0.10, 0.4)}  # k3: best single run and test; k5: best mean val_accuracy
        for trial in plan.trials:
            val, test, loss = values[trial.point.name, trial.repeat]
            runner.counts.move("queued", "running")
            runner._account(SimpleNamespace(trial=trial, run_id=f"r{trial.repeat}"),
                            TrialOutcome(trial.key, "r", "FINISHED",
                                         metrics={"val_accuracy": val, "test_accuracy": test, "val_loss": loss}))
        assert runner.tally.best_text() == expected
