"""Benchmarks of the NumPy CNN against PyTorch on the CPU (run by hand; ``--quick`` in CI).

    python -m benchmarks.run [--quick] [--out benchmarks/results] [--threads N]

Modules, one concept each: ``archs`` (the fixed architecture set and its PyTorch twin),
``steps`` (one training step in each framework), ``timing`` (alternated medians), ``layers``
(per-layer times, convolution FLOP/s), ``matmul`` (the machine's float32 matmul rate),
``memory`` (peak memory of a step against what its buffers need), ``machine`` (where the numbers
came from) and ``report`` (JSON and markdown).
"""
