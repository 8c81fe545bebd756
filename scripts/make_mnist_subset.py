#!/usr/bin/env python
"""Regenerate the stratified MNIST subset bundled in ``cnn/datasets/mnist-subset/``.

    python scripts/make_mnist_subset.py [--source DIR] [--out DIR] [--train N] [--test N] [--seed S]

Each class keeps its share of the full split (largest-remainder rounding, so the totals are exact
and every class is within one image of ``round(share * N)``); which images of a class are kept is
drawn with a fixed seed. Files are gzipped with mtime 0, so the same inputs give the same bytes.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import struct
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a plain checkout, without installing the package

from cnn.dataset import stratified_sample  # noqa: E402
from cnn.mnist import (  # noqa: E402
    TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, find_file, load_pair, missing_files,
)

SPLITS = (("train", TRAIN_IMAGES, TRAIN_LABELS), ("test", TEST_IMAGES, TEST_LABELS))


def write_idx_gz(path: Path, array: np.ndarray) -> bytes:
    """Write a uint8 array as gzipped IDX (mtime 0, level 9); return the uncompressed bytes."""
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    os.replace(tmp, path)
    return data


def readme(stats: dict, md5: list, seed: int) -> str:
    rows = "\n".join(
        f"| {split} | {n} | {' '.join(str(c) for c in counts)} |" for split, (n, counts) in stats.items()
    )
    md5s = "\n".join(f"- `{name}`: {digest}" for name, digest in md5)
    return f"""# MNIST subset (bundled)

A deterministic, stratified subset of the MNIST database of handwritten digits (Y. LeCun,
C. Cortes, C. J. C. Burges), shipped so that tests, examples and quick sweeps run without a
download. Same format as MNIST: four IDX files, gzipped; 28x28 uint8 images, uint8 labels.
Load it with `cnn.mnist.load_mnist("bundled")`.

| split | images | per class 0..9 |
| --- | --- | --- |
{rows}

How it was made: `python scripts/make_mnist_subset.py --seed {seed}` from the full MNIST files.
Each class keeps its share of the full split (largest-remainder rounding); the images kept within
a class are drawn with `numpy.random.default_rng({seed})` and stay in their original order.
Files are gzipped with mtime 0 at level 9. MD5 of the uncompressed IDX files:

{md5s}

Licence: MNIST is available under Creative Commons Attribution-Share Alike 3.0 (CC BY-SA 3.0);
this subset, derived from it, is under the same licence.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "mnist",
                        help="folder with the full MNIST IDX files (default: ../shared/data/mnist)")
    parser.add_argument("--out", type=Path, default=REPO / "cnn" / "datasets" / "mnist-subset",
                        help="output folder (default: cnn/datasets/mnist-subset)")
    parser.add_argument("--train", type=int, default=6000, help="training images (default 6000)")
    parser.add_argument("--test", type=int, default=1000, help="test images (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)

    missing = missing_files(args.source)
    if missing:
        parser.error(f"{args.source} lacks {', '.join(missing)}")
    args.out.mkdir(parents=True, exist_ok=True)
    stats, md5 = {}, []
    for (split, images_name, labels_name), size in zip(SPLITS, (args.train, args.test)):
        images, labels = load_pair(find_file(args.source, images_name),
                                   find_file(args.source, labels_name))
        if not 0 < size <= labels.size:
            parser.error(f"--{split} must be in 1..{labels.size}, got {size}")
        keep = stratified_sample(labels, size, args.seed)
        for name, array in ((images_name, images[keep]), (labels_name, labels[keep])):
            data = write_idx_gz(args.out / f"{name}.gz", array)
            md5.append((name, hashlib.md5(data).hexdigest()))
        counts = np.bincount(labels[keep], minlength=10)
        stats[split] = (keep.size, counts)
        print(f"{split}: {keep.size} images, per class {counts.tolist()}")
    (args.out / "README.md").write_text(readme(stats, md5, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
