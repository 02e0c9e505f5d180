"Shared helpers for the test suite (pytest puts this folder on sys.path, so test files can `from conftest import ...`)."
import os
import pytest
import torch
from gfn_nbdev.core import GraphEnv
from gfn_nbdev.testing import float64 as _float64

# The one marker for long statistical tests: `@slow` skips a test unless RUN_SLOW=1 (or any non-empty value).
slow = pytest.mark.skipif(not os.environ.get('RUN_SLOW'), reason='long statistical test: set RUN_SLOW=1')

def random_dag(seed, n=9, p=0.4):
    "A random DAG on n nodes (edges i->j only for i<j, every node reachable from 0), stopping at random nodes."
    g = torch.Generator().manual_seed(seed)
    edges = {(i - 1 - int(torch.randint(0, min(i, 3), (1,), generator=g)), i) for i in range(1, n)}  # a spanning tree
    for i in range(n):
        for j in range(i + 1, n):
            if torch.rand(1, generator=g) < p: edges.add((i, j))
    outdeg = [sum(u == i for u, _ in edges) for i in range(n)]
    term = [i for i in range(1, n) if outdeg[i] == 0 or torch.rand(1, generator=g) < 0.5]
    rewards = (torch.rand(len(term), generator=g) * 3 + 0.1).tolist()
    return GraphEnv(n, sorted(edges), term, rewards)

@pytest.fixture
def float64():
    "Run a test with float64 as torch's default dtype, restoring the previous default afterwards (`gfn_nbdev.testing.float64`)."
    with _float64(): yield
