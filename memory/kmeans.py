"""Vectorised k-means pieces shared by every sub-quantiser at once.

Data is laid out per sub-space: ``x`` is (n, m, d) and a codebook ``c`` is (m, K, d). All m
sub-spaces are handled by matrix products (BLAS, one thread) per sub-space and block of rows,
never a Python loop over vectors.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

# Rows per block of the (chunk, K) float32 distance matrix one sub-space materialises (~1 MB:
# it stays in cache between the product and the argmin).
_BLOCK_FLOATS = 1 << 18

try:  # optional: keeps numpy's BLAS on one thread around the bank's matrix products
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - a declared dependency; kept optional for numpy-only use
    ThreadpoolController = None

_controller: list[Any] = []


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """numpy's BLAS limited to one thread inside the block (a no-op without threadpoolctl).

    The products here are many medium GEMMs (chunk x d by d x K per sub-space): one thread runs
    them at BLAS speed (about 10x numpy's own einsum loops), while a threaded BLAS on a small
    busy machine spends its time waking threads and contending with its neighbours. The limit
    is process-wide while it lasts, like any BLAS thread setting.
    """
    if ThreadpoolController is None:
        return contextlib.nullcontext()
    if not _controller:
        _controller.append(ThreadpoolController())
    return _controller[0].limit(limits=1, user_api="blas")


T = TypeVar("T")
R = TypeVar("R")
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def in_parallel(fn: Callable[[T], R], items: Sequence[T], threads: int = 1) -> list[R]:
    """``[fn(i) for i in items]``, on ``threads`` threads when more than one.

    The work handed out here is BLAS products and numpy passes over large arrays, which
    release the GIL, so threads overlap; BLAS itself stays on one thread per task (the limit
    is held around the whole call, so the tasks' own limits nest inside it). Tasks must not
    call ``in_parallel`` with more than one thread themselves: the pool is shared.
    """
    if threads <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="memory")
    with one_blas_thread():
        return list(pool.map(fn, items))


def assign(x: np.ndarray, c: np.ndarray, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Nearest codeword per vector and sub-space: (codes (n, m) int64, squared error (n, m)).
    ``threads``: sub-spaces handled side by side."""
    n, m, d = x.shape
    k = c.shape[1]
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, and ||x||^2 does not change the argmin: one
    # product of [x, 1] with [-2 c; ||c||^2] gives the rest, with no passes over the
    # (rows, K) block besides the argmin (a quarter faster than scaling and adding after).
    aug = np.empty((m, d + 1, k), dtype=np.float32)
    aug[:, :d] = -2.0 * c.transpose(0, 2, 1)
    aug[:, d] = np.einsum("mkd,mkd->mk", c, c)
    codes = np.empty((n, m), dtype=np.int64)
    err = np.empty((n, m), dtype=np.float32)
    chunk = max(1, min(n, _BLOCK_FLOATS // k))

    def subspace(j: int) -> None:
        rows = np.empty((chunk, d + 1), dtype=np.float32)
        rows[:, d] = 1.0
        dist = np.empty((chunk, k), dtype=np.float32)
        with one_blas_thread():
            for lo in range(0, n, chunk):
                xb = x[lo : lo + chunk, j]
                b = len(xb)
                xa = rows[:b]
                xa[:, :d] = xb
                block = dist[:b]
                np.matmul(xa, aug[j], out=block)
                best = block.argmin(axis=1)
                codes[lo : lo + b, j] = best
                err[lo : lo + b, j] = np.take_along_axis(block, best[:, None], axis=1)[:, 0]

    in_parallel(subspace, range(m), threads)
    err += np.einsum("nmd,nmd->nm", x, x)
    np.maximum(err, 0.0, out=err)
    return codes, err


def group_sums(x: np.ndarray, codes: np.ndarray, k: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per sub-space and codeword: (sum of assigned vectors (m, K, d) float64, counts (m, K)).
    ``threads``: sub-spaces summed side by side."""
    _, m, d = x.shape
    sums = np.empty((m, k, d), dtype=np.float64)
    counts = np.empty((m, k), dtype=np.float64)

    def subspace(j: int) -> None:
        own = codes[:, j]
        counts[j] = np.bincount(own, minlength=k)
        rows = x[:, j]
        for i in range(d):  # d is small (dim / m); each bincount is one vectorised pass
            sums[j, :, i] = np.bincount(own, weights=rows[:, i], minlength=k)

    in_parallel(subspace, range(m), threads)
    return sums, counts


def lloyd(
    x: np.ndarray,
    k: int,
    iters: int,
    rng: np.random.Generator,
    init: np.ndarray | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means per sub-space on (n, m, d) data: (codebook (m, K, d) float32, counts (m, K)).

    ``init``: a codebook to start from (a warm start) instead of sampled points. With fewer
    distinct points than codewords the spare codewords copy sampled points and get count 0,
    which marks them for a dead-code reset once more data has streamed in.
    """
    n, m, d = x.shape
    if init is not None:
        c = np.array(init, dtype=np.float32, copy=True)
    else:
        c = np.empty((m, k, d), dtype=np.float32)
        take = min(n, k)
        for j in range(m):
            first = rng.choice(n, size=take, replace=False)
            c[j, :take] = x[first, j]
            if take < k:
                c[j, take:] = x[rng.choice(n, size=k - take, replace=True), j]
    counts = np.zeros((m, k), dtype=np.float64)
    for it in range(iters + 1):
        codes, err = assign(x, c, threads)
        sums, counts = group_sums(x, codes, k, threads)
        if it == iters:
            break
        filled = counts > 0
        c = np.where(filled[:, :, None], sums / np.maximum(counts, 1.0)[:, :, None], c).astype(np.float32)
        # Empty clusters restart on the worst-served points of their sub-space.
        floor = 1e-6 * np.einsum("nmd,nmd->m", x, x) / max(1, n)  # float noise, not error
        for jj in np.flatnonzero((~filled).any(axis=1)):
            empty = np.flatnonzero(~filled[jj])
            worst = np.argsort(err[:, jj])[::-1][: len(empty)]
            worst = worst[err[worst, jj] > floor[jj]]
            c[jj, empty[: len(worst)]] = x[worst, jj]
    return c, counts
