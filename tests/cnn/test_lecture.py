"""The lecture's worked examples (../shared/seed/cnn-lecture.md) as golden tests, and the naive
loop references against the fast kernels."""
import itertools

import numpy as np
import pytest

import cnn
from tests.cnn.reference import conv2d_naive, max_pool_grad_naive, pool2d_naive

TWOS = np.full((1, 1, 2, 2), 2.0)


def conv_of_twos(x, stride=1, padding=0):
    layer = cnn.Conv2D(1, 1, 2, stride, padding, dtype=np.float64)
    layer.params["W"] = TWOS.copy()
    return layer.forward(np.asarray(x, float)[None, None])[0, 0]


def test_section4_forward_and_A_prime():
    A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], float)
    np.testing.assert_array_equal(conv_of_twos(A), [[24, 32, 22], [48, 56, 34]])
    # The lecture's A' lists kernel positions, and the entries of each window, in column order.
    A_prime = np.array([[1, 4, 2, 5, 3, 6],
                        [4, 7, 5, 8, 6, 9],
                        [2, 5, 3, 6, 1, 1],
                        [5, 8, 6, 9, 1, 1]], float)
    # Column order of A is row order of A.T, so im2col of the transpose is A'^T exactly.
    np.testing.assert_array_equal(cnn.im2col(A.T[None, None], 2), A_prime.T)
    # Our own row-major im2col holds the same windows: one row per kernel position.
    rows = cnn.im2col(A[None, None], 2)
    assert rows.shape == (6, 4)
    np.testing.assert_array_equal(rows[0], [1, 2, 4, 5])
    # A'^T @ flattened kernel gives the output in column order: 24 48 32 56 22 34.
    np.testing.assert_array_equal(A_prime.T @ np.full(4, 2.0), [24, 48, 32, 56, 22, 34])


def test_section6_3_stride():
    x = [[1, 2], [4, 5]]
    np.testing.assert_array_equal(conv_of_twos(x, stride=1, padding=1), [[2, 6, 4], [10, 24, 14], [8, 18, 10]])
    np.testing.assert_array_equal(conv_of_twos(x, stride=2, padding=1), [[2, 4], [8, 10]])


def test_section6_4_zero_padding():
    x = [[1, 2], [4, 5]]
    np.testing.assert_array_equal(conv_of_twos(x), [[24]])
    np.testing.assert_array_equal(conv_of_twos(x, padding=1), [[2, 6, 4], [10, 24, 14], [8, 18, 10]])


def test_relu_after_convolution_matches_reference():
    x = np.array([[4, 1, 2, 4, 7, 9], [0, 1, 2, 0, 2, 3], [6, 4, 5, 2, 1, 3], [8, 1, 2, 1, 3, 2]], float)
    k = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], float)
    layer = cnn.Conv2D(1, 1, 3, dtype=np.float64)
    layer.params["W"] = k[None, None]
    y = cnn.ReLU().forward(layer.forward(x[None, None]))[0, 0]
    expected = np.maximum(conv2d_naive(x[None, None], k[None, None], np.zeros(1))[0, 0], 0)
    np.testing.assert_array_equal(y, expected)


def test_col2im_is_the_adjoint_of_im2col():
    # <im2col(x), c> == <x, col2im(c)> for every x and c: the scatter is the transpose of the gather.
    rng = np.random.default_rng(0)
    for k, s, p in [(3, 1, 1), (2, 2, 0), ((1, 3), (2, 1), "same"), (5, 3, 2)]:
        x = rng.standard_normal((2, 3, 8, 7))
        cols = cnn.im2col(x, k, s, p)
        c = rng.standard_normal(cols.shape)
        np.testing.assert_allclose(np.sum(cols * c), np.sum(x * cnn.col2im(c, x.shape, k, s, p)), rtol=1e-12)


@pytest.mark.parametrize("k,s,p", list(itertools.product([1, 3, (2, 3)], [1, 2], [0, 1, "same"])))
def test_conv_matches_naive_loops(k, s, p):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 6))
    layer = cnn.Conv2D(3, 2, k, s, p, rng=rng, dtype=np.float64)
    layer.params["b"] = rng.standard_normal(2)
    np.testing.assert_allclose(layer.forward(x), conv2d_naive(x, layer.params["W"], layer.params["b"], s, p),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["max", "avg", "l2"])
@pytest.mark.parametrize("size,stride,padding", [(2, None, 0), (3, 2, 1), (2, 1, 0), ((2, 3), 2, 0)])
def test_pool_matches_naive_loops(mode, size, stride, padding):
    x = np.random.default_rng(2).integers(-3, 4, size=(2, 2, 7, 8)).astype(float)
    layer = cnn.Pool2D(mode, size, stride, padding)
    np.testing.assert_allclose(layer.forward(x), pool2d_naive(x, mode, size, stride, padding), rtol=1e-12)
    if mode == "max":
        dy = np.random.default_rng(3).standard_normal(layer.forward(x).shape)
        np.testing.assert_allclose(layer.backward(dy), max_pool_grad_naive(x, dy, size, stride, padding))
