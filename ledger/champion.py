"""The chosen point's network as an MLflow pyfunc model: raw images in, labels and probabilities out.

Logged by :func:`ledger.models.register_champion` as a *model from code*
(``ledger/champion_code.py``): no pickle, the weights are the trial's own ``model.npz``
(artifact :data:`~ledger.schema.MODEL_ARTIFACT`), read with :func:`cnn.load_model`, which carries
the standardisation fitted on the sweep's training split. Serving needs this package importable
(``--env-manager local`` in the project's environment).

Input: raw images on the scale the sweep's data files hold them (``cnn.load_source``: pixels
0..255 for MNIST), uint8 or float, as ``(N, C, H, W)``, ``(N, H, W)`` for one channel,
``(N, H, W, C)``, or rows of ``C*H*W`` flattened pixels (an array or a DataFrame); anything else is
refused with a message naming these shapes. The signature declares the output only: MLflow would
check an input tensor's exact shape and dtype and refuse every other layout.
Output: a DataFrame, one row per image: ``label`` (int64) and ``prob_<k>`` (float64) per class.
"""

import numpy as np

from mlflow.pyfunc import PythonModel

from .schema import LABEL_COLUMN, MODEL_ARTIFACT, PROB_PREFIX

#: Images per forward pass: bounds memory for a large request.
BATCH = 500


def as_images(values, shape: tuple[int, int, int]) -> np.ndarray:
    """``values`` (array or DataFrame) as ``(N, C, H, W)`` images of ``shape = (C, H, W)``; a
    ``ValueError`` naming the expected shape otherwise."""
    x = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)
    c, h, w = shape
    if x.ndim == 4 and x.shape[1:] == (c, h, w):
        return x
    if x.ndim == 4 and x.shape[1:] == (h, w, c):
        return x.transpose(0, 3, 1, 2)
    if x.ndim == 3 and c == 1 and x.shape[1:] == (h, w):
        return x[:, None]
    if x.ndim == 2 and x.shape[1] == c * h * w:
        return x.reshape(-1, c, h, w)
    raise ValueError(f"expected raw images of shape (N, {c}, {h}, {w}) (or (N, {h}, {w}, {c}), or N rows of "
                     f"{c * h * w} pixels), got {x.shape}")


def predict_raw(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (N,), probabilities (N, classes))`` of ``model`` (a :class:`cnn.Model`) on raw
    images ``x`` (N, C, H, W), in batches; the labels are the logits' argmax, as ``model.predict``'s."""
    from cnn.losses import log_softmax
    from cnn.model import evaluating

    logits = []
    with evaluating(model):
        for i in range(0, len(x), BATCH):
            logits.append(model.forward(model.prepare(x[i : i + BATCH])))
    z = np.concatenate(logits) if logits else np.zeros((0, model.spec.classes))
    return z.argmax(axis=1).astype(np.int64), np.exp(log_softmax(z.astype(np.float64)))


class ChampionModel(PythonModel):
    """A :class:`cnn.Model` read from the ``model`` artifact; predicts raw images (see the module)."""

    def load_context(self, context):
        import cnn

        self.model = cnn.load_model(context.artifacts[MODEL_ARTIFACT])

    def predict(self, context, model_input: np.ndarray, params=None):  # a hint MLflow infers nothing from
        import pandas as pd

        x = as_images(model_input, tuple(self.model.spec.input_shape))
        self.model.check_raw_pixels(x)  # standardised images would be standardised twice
        labels, probs = predict_raw(self.model, x)
        frame = pd.DataFrame(probs, columns=[f"{PROB_PREFIX}{k}" for k in range(probs.shape[1])])
        frame.insert(0, LABEL_COLUMN, labels)
        return frame
