"""cnn: the lecture's convolutional network in pure NumPy (NCHW arrays, float32 by default).

Layers share one protocol: ``y = layer.forward(x)``; ``dx = layer.backward(dy)`` fills
``layer.grads`` with the keys of ``layer.params``.
"""
from .activations import ReLU, Sigmoid, sigmoid
from .augment import Augment
from .batchnorm import BatchNorm
from .conv import Conv2D
from .dataset import DataError, Dataset, split, subsample
from .dense import Dense, Flatten
from .dropout import Dropout
from .im2col import col2im, im2col
from .io import load_checkpoint, load_model, save_checkpoint, save_model
from .mnist import MnistError, load_mnist, mnist_dir
from .losses import log_softmax, softmax_cross_entropy
from .model import Model
from .normalize import Normalizer
from .optim import SGD, Adam, make_optimizer
from .pool import Pool2D
from .schedules import Schedule
from .sources import SOURCES, load_cifar10, load_folder, load_idx, load_npz, load_source
from .spec import (ConvBlockSpec, LayerInfo, ModelSpec, ShapeError, coverage_problems, describe,
                   forward_flops, infer_shapes, param_count)
from .train import DivergenceError, EpochReport, FitResult, early_stopping, evaluate, fit

__all__ = [
    "Conv2D", "Pool2D", "ReLU", "Sigmoid", "sigmoid", "Dense", "Flatten", "BatchNorm", "Dropout", "Schedule",
    "im2col", "col2im",
    "softmax_cross_entropy", "log_softmax", "ModelSpec", "ConvBlockSpec", "LayerInfo", "ShapeError",
    "infer_shapes", "param_count", "forward_flops", "coverage_problems", "describe", "Model",
    "SGD", "Adam", "make_optimizer", "fit", "evaluate", "early_stopping", "EpochReport", "FitResult",
    "DivergenceError", "Dataset", "split", "subsample", "save_model", "load_model", "save_checkpoint",
    "load_checkpoint", "load_mnist", "mnist_dir", "MnistError", "DataError", "Normalizer", "Augment",
    "SOURCES", "load_source", "load_idx", "load_npz", "load_folder", "load_cifar10",
]
