"""Writes the synthetic tables docs/data.md's CSV comparison uses (seeded, so every run writes
the same bytes): a classification with string labels and a regression, each as train and
test files, and optionally one big table for the loading benchmark.

Usage: python tools/make_tables.py OUT_DIR [BIG_ROWS]
  OUT_DIR/classes_train.csv, classes_test.csv: 8 features, 3 classes named by strings
  OUT_DIR/regress_train.csv, regress_test.csv: 10 features, a smooth target plus noise
  OUT_DIR/big.csv (with BIG_ROWS): BIG_ROWS rows x 50 features, 10 integer classes
"""
import os, sys
import numpy as np

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(20261202)


def write(path, header, cols, fmt):
    with open(path, 'w') as f:
        f.write(','.join(header) + '\n')
        for row in zip(*cols):
            f.write(','.join(fmt(v) for v in row) + '\n')


def classes(n):
    x = rng.normal(size=(n, 8)).astype(np.float32)
    score = np.stack([x[:, 0] + x[:, 1] * x[:, 2], x[:, 3] - 0.5 * x[:, 4] ** 2, np.sin(2 * x[:, 5]) + x[:, 6]], 1)
    y = np.argmax(score + 0.3 * rng.normal(size=score.shape), 1)
    names = np.array(['setosa', 'versicolor', 'virginica'])[y]
    return x, names


def regress(n):
    x = rng.normal(size=(n, 10)).astype(np.float32)
    y = 2 * x[:, 0] - x[:, 1] + np.sin(x[:, 2]) + x[:, 3] * x[:, 4] + 0.5 * rng.normal(size=n)
    return x, y


num = lambda v: '%.6g' % v
for name, make, n_train, n_test in [('classes', classes, 8000, 2000), ('regress', regress, 40000, 5000)]:
    for split, n in [('train', n_train), ('test', n_test)]:
        x, y = make(n)
        header = ['f%d' % j for j in range(x.shape[1])] + ['target']
        write(os.path.join(out, '%s_%s.csv' % (name, split)), header,
              [x[:, j] for j in range(x.shape[1])] + [y], lambda v: v if isinstance(v, str) else num(v))

if len(sys.argv) > 2:
    rows = int(sys.argv[2])
    with open(os.path.join(out, 'big.csv'), 'w') as f:
        f.write(','.join('f%d' % j for j in range(50)) + ',label\n')
        for start in range(0, rows, 100000):
            m = min(100000, rows - start)
            x = rng.normal(size=(m, 50)).astype(np.float32)
            y = (x[:, :10].sum(1) > 0).astype(int) + 2 * (x[:, 10:20].sum(1) > 0) + 4 * (x[:, 20] > 1)
            lines = '\n'.join(','.join('%.4f' % v for v in r) + ',%d' % l for r, l in zip(x, y))
            f.write(lines + '\n')
