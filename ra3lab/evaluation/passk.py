"""pass@k: the unbiased estimator of Chen et al. (2021), "Evaluating Large Language Models Trained on Code"."""

from __future__ import annotations

import numpy as np

from ra3lab.errors import check


def _integers(field: str, value) -> np.ndarray:
    array = np.asarray(value)
    check(array.dtype.kind in "iu" or (array.dtype.kind == "f" and bool(np.all(array == np.round(array)))), field,
          value, "must hold integers")
    return array.astype(np.int64)


def pass_at_k(n, c, k: int) -> np.ndarray:
    """Per task, the chance that at least one of k samples drawn without replacement from n passes, c of which do.

    n, c: samples and passing samples per task, integers or arrays that broadcast together (shape S);
    returns float64 of shape S: ``1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i)``, the product form,
    which never forms a binomial coefficient (no overflow), and 1 where ``n - c < k``.
    """
    check(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1, "k", k, "must be an integer >= 1")
    n, c = np.broadcast_arrays(_integers("n", n), _integers("c", c))
    check(bool(np.all(c >= 0)), "c", c.min(initial=0), "must be >= 0")
    check(bool(np.all(c <= n)), "c", c[c > n][:1].tolist(), "must be <= n, the number of samples")
    check(bool(np.all(k <= n)), "k", k, f"must be <= n, the number of samples (smallest n: {n.min(initial=k)})")
    width = int(c.max(initial=0))
    i = (n - c + 1)[..., None] + np.arange(width)             # (..., width): n-c+1, ..., n-c+width
    used = np.arange(width) < c[..., None]                    # the first c factors of each task
    terms = np.where(used, 1.0 - k / np.where(used, i, 1), 1.0)
    return np.where(n - c < k, 1.0, 1.0 - terms.prod(axis=-1))
