"""Vectorised k-means pieces shared by every sub-quantiser at once.

Data is laid out per sub-space: ``x`` is (n, m, d) and a codebook ``c`` is (m, K, d). All m
sub-spaces are handled by one batched matrix product, never a Python loop over vectors.
"""

from __future__ import annotations

import numpy as np

# Bound on the (m, chunk, K) float32 distance block that assignment materialises (~32 MB).
_BLOCK_FLOATS = 1 << 23


def assign(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest codeword per vector and sub-space: (codes (n, m) int64, squared error (n, m))."""
    n, m, _ = x.shape
    k = c.shape[1]
    cnorm = np.einsum("mkd,mkd->mk", c, c)  # (m, K)
    ct = np.ascontiguousarray(c.transpose(0, 2, 1))  # (m, d, K)
    codes = np.empty((n, m), dtype=np.int64)
    err = np.empty((n, m), dtype=np.float32)
    chunk = max(1, _BLOCK_FLOATS // (m * k))
    for lo in range(0, n, chunk):
        xb = x[lo : lo + chunk]
        xs = np.ascontiguousarray(xb.transpose(1, 0, 2))  # (m, b, d)
        # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; the ||x||^2 term does not change the argmin.
        # einsum, not matmul: stacked small GEMMs through a threaded BLAS run several times
        # slower on a busy machine, and this single-threaded loop is predictable.
        dist = np.einsum("mbd,mdk->mbk", xs, ct)
        dist *= -2.0
        dist += cnorm[:, None, :]
        best = dist.argmin(axis=2)  # (m, b)
        codes[lo : lo + chunk] = best.T
        near = np.take_along_axis(dist, best[:, :, None], axis=2)[:, :, 0]
        err[lo : lo + chunk] = np.maximum(near.T + np.einsum("bmd,bmd->bm", xb, xb), 0.0)
    return codes, err


def group_sums(x: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per sub-space and codeword: (sum of assigned vectors (m, K, d) float64, counts (m, K))."""
    n, m, d = x.shape
    flat = (codes + (np.arange(m, dtype=np.int64) * k)[None, :]).ravel()  # row i*m+j
    rows = x.reshape(n * m, d)
    counts = np.bincount(flat, minlength=m * k).astype(np.float64)
    sums = np.empty((m * k, d), dtype=np.float64)
    for j in range(d):  # d is small (dim / m); each bincount is one vectorised pass
        sums[:, j] = np.bincount(flat, weights=rows[:, j], minlength=m * k)
    return sums.reshape(m, k, d), counts.reshape(m, k)


def lloyd(x: np.ndarray, k: int, iters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """k-means per sub-space on (n, m, d) data: (codebook (m, K, d) float32, counts (m, K)).

    With fewer distinct points than codewords the spare codewords copy sampled points and get
    count 0, which marks them for a dead-code reset once more data has streamed in.
    """
    n, m, d = x.shape
    c = np.empty((m, k, d), dtype=np.float32)
    take = min(n, k)
    for j in range(m):
        first = rng.choice(n, size=take, replace=False)
        c[j, :take] = x[first, j]
        if take < k:
            c[j, take:] = x[rng.choice(n, size=k - take, replace=True), j]
    counts = np.zeros((m, k), dtype=np.float64)
    for it in range(iters + 1):
        codes, err = assign(x, c)
        sums, counts = group_sums(x, codes, k)
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
