"Proposition 1 with the real sampler: the sampled TB gradient is unbiased for 2 grad KL(p_F || p_B), whatever log Z_theta."
import math
import pytest
import torch
from torch.autograd import grad
from gfn_nbdev.core import sample_trajectories
from gfn_nbdev.exact import TablePolicy, enumerate_trajectories
from gfn_nbdev.gflownets import lattice_env

pytestmark = pytest.mark.usefixtures('float64')   # exact references in float64 (tests/conftest.py)


def _setup():
    env = lattice_env()
    pf = TablePolicy(env, torch.randn(env.M, env.n_actions, generator=torch.Generator().manual_seed(0)))
    log_Z = torch.logsumexp(env.log_reward(env.terminal_states()), 0)
    ts = enumerate_trajectories(env, pf)
    g_kl = grad((ts.log_pf.exp() * (ts.log_ratio + log_Z)).sum(), pf.logits)[0].flatten()
    return env, pf, log_Z, g_kl


def test_sampled_tb_gradient_is_2_grad_kl():
    env, pf, log_Z, g_kl = _setup()
    torch.manual_seed(0)
    B, n = 400, 64                                      # 400 batches of 64 trajectories
    tvar = {}
    for c in (-3., float(log_Z), 5.):
        est = torch.stack([grad(((c + sample_trajectories(env, pf, n).log_ratio) ** 2).mean(), pf.logits)[0].flatten()
                           for _ in range(B)])          # (B, P) one TB gradient per batch
        mean, se = est.mean(0), est.std(0) / math.sqrt(B)
        live = se > 0                                   # masked logits have exactly zero gradient
        # 4 standard errors per coordinate over 400 batches
        assert ((mean - 2 * g_kl).abs()[live] < 4 * se[live]).all(), (c, mean, 2 * g_kl, se)
        assert (mean[~live] == 0).all() and (g_kl[~live] == 0).all()
        tvar[c] = est.var(0).sum().item()
    # log Z acts as a baseline: a bad value costs variance (exact ratio on this DAG ~23x at c = -3)
    assert tvar[-3.] > 5 * tvar[float(log_Z)] and tvar[5.] > 2 * tvar[float(log_Z)], tvar
