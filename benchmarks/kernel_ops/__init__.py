"""One module per op for benchmarks/kernels.py; each exposes ``bench(quick: bool) -> OpResult``."""
