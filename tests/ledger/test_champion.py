"""The champion's pyfunc code and choice of run, without a store: shapes it takes, labels as
``cnn.Model.predict``, the run that stands for the chosen point."""
import math

import numpy as np
import pandas as pd
import pytest

import cnn
from cnn.spec import ConvBlockSpec, ModelSpec
from ledger.champion import ChampionModel, as_images, predict_raw
from ledger.models import chosen_run
from ledger.selection import Selection


@pytest.fixture(scope="module")
def model():
    spec = ModelSpec(blocks=(ConvBlockSpec(4, 3, padding="same"),), dense=(8,), input_shape=(1, 8, 8))
    return cnn.Model(spec, seed=0, normalizer=cnn.Normalizer((30.0,), (70.0,))).eval()


def test_raw_images_of_every_usual_layout_give_the_models_labels(model):
    x = np.random.default_rng(0).integers(0, 256, (5, 1, 8, 8), dtype=np.uint8)
    labels, probs = predict_raw(model, x)
    np.testing.assert_array_equal(labels, model.predict(x))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    for layout in (x, x[:, 0], x.transpose(0, 2, 3, 1), x.reshape(5, -1), pd.DataFrame(x.reshape(5, -1))):
        np.testing.assert_array_equal(as_images(layout, (1, 8, 8)), x)
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        as_images(x[:, :, :4], (1, 8, 8))
    pyfunc = ChampionModel()
    pyfunc.model = model
    out = pyfunc.predict(None, x)
    assert list(out.columns) == ["label"] + [f"prob_{k}" for k in range(10)]
    np.testing.assert_array_equal(out["label"], labels)
    np.testing.assert_array_equal(pyfunc.predict(None, x.astype(np.float32)[:, 0])["label"], labels)  # float pixels
    with pytest.raises(ValueError, match="standardised already"):  # never standardised twice
        pyfunc.predict(None, (x.astype(np.float32) - 30.0) / 70.0)


def test_the_chosen_points_best_repeat_stands_for_it():
    rows = [("a", 0, "FINISHED", 0.90, 1), ("a", 1, "FINISHED", 0.94, 2), ("b", 0, "FINISHED", 0.93, 3),
            ("b", 1, "FINISHED", 0.93, 4), ("a", 2, "FAILED", math.nan, 5)]
    runs = pd.DataFrame([{"point": p, "repeat": r, "status": s, "val_accuracy": v, "run_id": f"r{t}",
                          "start_time": pd.Timestamp(t, unit="s"), "point_name": p} for p, r, s, v, t in rows])
    assert chosen_run(runs, Selection())["run_id"] == "r3"  # b (mean 0.93 > 0.92); its repeats tie: the earliest
    assert chosen_run(runs, Selection("val_accuracy", "min"))["run_id"] == "r1"  # a; its lowest repeat
