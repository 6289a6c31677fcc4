#!/usr/bin/env python3
"""Trains the example model and writes its weights [w1, w2, b] as a NumPy .npy file.

    python3 train.py [OUT]        # default: model.npy; prints "sha256 <hex>  <OUT>"

The data is a fixed grid of points (x1, x2) in [0, 1] x [0, 1], labelled 1 where
x1 + 2*x2 > 1. The classifier is linear: a least-squares fit of the target log-odds (+3 for
label 1, -3 for label 0) by the normal equations, so the server's sigmoid of
w1*x1 + w2*x2 + b is a probability. Only + - * / on floats: every machine writes the same
bytes, and so the same sha256. Standard library only.
"""

import hashlib
import struct
import sys
from pathlib import Path

GRID = 10  # the grid's points are i/GRID and j/GRID for i, j in 0..GRID
TARGET = 3.0  # the log-odds the fit aims at; the sigmoid of 3 is about 0.95


def dataset():
    """Yields ((x1, x2), label) for every point of the grid."""
    for i in range(GRID + 1):
        for j in range(GRID + 1):
            yield (i / GRID, j / GRID), int(i + 2 * j > GRID)


def solve(a, v):
    """Solves a x = v for a small square matrix by Gaussian elimination with partial pivoting."""
    n = len(v)
    rows = [list(a[r]) + [v[r]] for r in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, n):
            factor = rows[r][col] / rows[col][col]
            rows[r] = [x - factor * y for x, y in zip(rows[r], rows[col])]
    x = [0.0] * n
    for r in reversed(range(n)):
        x[r] = (rows[r][n] - sum(rows[r][c] * x[c] for c in range(r + 1, n))) / rows[r][r]
    return x


def fit():
    """The weights [w1, w2, b] that minimise the squared error to the target log-odds."""
    a = [[0.0] * 3 for _ in range(3)]
    v = [0.0] * 3
    for (x1, x2), label in dataset():
        row = (x1, x2, 1.0)
        target = TARGET if label else -TARGET
        for r in range(3):
            v[r] += row[r] * target
            for c in range(3):
                a[r][c] += row[r] * row[c]
    return solve(a, v)


def npy(values):
    """A 1-D little-endian float64 array in the .npy format, version 1.0."""
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%d,), }" % len(values)
    # magic (6 bytes), version (2), header length (2), header ending in "\n": a multiple of 64.
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    return (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1")
            + struct.pack("<%dd" % len(values), *values))


def main(argv):
    if len(argv) > 2:
        sys.exit("usage: python3 train.py [OUT]")
    out = Path(argv[1] if len(argv) > 1 else "model.npy")
    data = npy(fit())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(f"sha256 {hashlib.sha256(data).hexdigest()}  {out}")


if __name__ == "__main__":
    main(sys.argv)
