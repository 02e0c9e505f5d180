"""Off-policy (importance-weighted) divergence estimators of nbs/05_estimators.ipynb, section "Off-policy".

Batches come from a behaviour policy q (ε-uniform mixture or tempered p_F, `ExploredPolicy`), whose log q of every
trajectory of an enumerable toy DAG is exact. Deterministic checks enumerate every ordered batch of N = 2 (exact mean of
the estimate under q); statistical ones use the real sampler, fixed seeds, |t| < 4.5 (Bonferroni over ~20 coordinates:
P(max|t| > 4.5) ≤ 20·6.8e-6 under normality). Fast part: about 25 s of CPU on one thread.
"""
import itertools, math
import pytest
import torch
from gfn_nbdev.core import *
from gfn_nbdev.exact import *
from gfn_nbdev.divergences import *
from gfn_nbdev.estimators import *
from gfn_nbdev.testing import max_abs_t, toy_dag

BEHAVIOUR = dict(eps=dict(epsilon=.3), temp=dict(temperature=2.))

pytestmark = pytest.mark.usefixtures('float64')   # exact references in float64 (tests/conftest.py)

def setup(seed=0, pb=False):
    "toy_dag(3, 3), a random tabular p_F (and p_B), the exact set, and log q (K,) of each behaviour over it."
    env = toy_dag(3, 3)
    torch.manual_seed(seed)
    pf = TablePolicy(env, torch.randn(env.M, env.n_actions))
    pbk = TablePolicy(env, torch.randn(env.M, env.n_bactions), backward=True) if pb else None
    ts = enumerate_trajectories(env, pf, pbk)
    log_q = {k: enumerate_trajectories(env, ExploredPolicy(pf, **kw)).log_pf.detach() for k, kw in BEHAVIOUR.items()}
    return env, pf, pbk, ts, log_q

def exact_mean(L, ts, lq, params, N=2, with_q=True):
    "E_q of the gradient estimate over every ordered batch of N trajectories drawn from q = exp(lq) (with_q=False: the batch hides log q)."
    tot = 0.
    for idx in itertools.product(range(len(ts)), repeat=N):
        i = torch.tensor(idx)
        b = LogProbBatch(ts.log_pf[i], ts.log_pb[i], ts.log_reward[i], lq[i] if with_q else None)
        tot = tot + lq[i].sum().exp() * flat_grad(L(b, params)[0], params)
    return tot

def targets(ts, params, alpha=.5, c_f=0., c_t=0.):
    "Exact gradients, each times the known constant the unbiased estimator carries (forward KL, Tsallis shifts)."
    D, logZ = trajectory_divergences(ts, alpha), log_Z_of(ts).item()
    g = {k: flat_grad(v, params) for k, v in D.items()}
    return dict(reverse_kl=g['reverse_kl'], forward_kl=math.exp(logZ - c_f) * g['forward_kl'],
                tsallis=math.exp((alpha - 1) * (c_t - logZ)) * g['tsallis'])

def plain(name, cv, alpha=.5, c=0.):
    return dict(reverse_kl=lambda: ReverseKL(cv, is_weights='plain'),
                forward_kl=lambda: ForwardKL(cv, log_shift=c, is_weights='plain'),
                tsallis=lambda: Tsallis(alpha, cv, log_shift=c, is_weights='plain'))[name]()

# ------------------------------------------------------------------------------------------------ exact, N = 2

@pytest.mark.parametrize('q', list(BEHAVIOUR))
@pytest.mark.parametrize('alpha', [.5, 2.])
def test_plain_weights_exactly_unbiased(q, alpha):
    "Plain ω/N weights: E_q[estimate] = exact gradient (times the on-policy factor), with every control variate."
    env, pf, _, ts, log_q = setup()
    params = [pf.logits]
    T = targets(ts, params, alpha)
    for name in ('reverse_kl', 'forward_kl', 'tsallis'):
        if name != 'tsallis' and alpha != .5: continue
        for cv in (None, 'loo', 'loo+sf'):
            got = exact_mean(plain(name, cv, alpha), ts, log_q[q], params)
            err = ((got - T[name]).abs().max() / T[name].abs().max()).item()
            assert err < 1e-10, (q, alpha, name, cv, err)

def test_ignoring_q_is_biased_and_self_normalised_is_biased_at_N2():
    "The test has power: the same batches without their log q (the old behaviour), or self-normalised, are off target."
    env, pf, _, ts, log_q = setup()
    params = [pf.logits]
    T = targets(ts, params)
    for name in ('reverse_kl', 'tsallis'):
        L = plain(name, 'loo')
        blind = exact_mean(L, ts, log_q['eps'], params, with_q=False)
        assert ((blind - T[name]).abs().max() / T[name].abs().max()).item() > 1e-2, name
    sn = exact_mean(ReverseKL('loo'), ts, log_q['temp'], params)
    assert ((sn - T['reverse_kl']).abs().max() / T['reverse_kl'].abs().max()).item() > 1e-2

def test_learned_backward_pathwise_term_unbiased_off_policy():
    "With a learned p_B, the pathwise term is importance-weighted too: E_q = exact ∇_φ KL(p_F‖p_B)."
    env, pf, pb, ts, log_q = setup(seed=5, pb=True)
    want = flat_grad(trajectory_divergences(ts, .5)['reverse_kl'], [pb.logits])
    got = exact_mean(ReverseKL('loo', is_weights='plain'), ts, log_q['eps'], [pb.logits])
    assert want.abs().max() > 1e-3
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10 * want.abs().max().item())

# ------------------------------------------------------------------------------------------------ real sampler

@pytest.mark.parametrize('q', list(BEHAVIOUR))
def test_real_sampler_plain_unbiased(q):
    "300 batches of 8 from sample_trajectories(ε=0.3 | T=2), plain weights, default control variates: |t| < 4.5."
    env, pf, _, ts, _ = setup()
    params = [pf.logits]
    T = targets(ts, params, c_f=1., c_t=1.)
    for k, (name, L) in enumerate([('reverse_kl', plain('reverse_kl', 'loo+sf')), ('forward_kl', plain('forward_kl', 'loo', c=1.)),
                                   ('tsallis', plain('tsallis', 'loo+sf', c=1.))]):
        torch.manual_seed(10 + k)
        G = gradient_samples(L, lambda: sample_trajectories(env, pf, 8, **BEHAVIOUR[q]), params, 300)
        t, n = max_abs_t(G, T[name])
        assert t < 4.5 and n >= 15, (q, name, t, n)

def test_sampler_log_q_matches_explored_policy():
    "The sampler's recorded log q is the ExploredPolicy's log-probability of the same trajectory."
    env, pf, _, ts, log_q = setup()
    for q, kw in BEHAVIOUR.items():
        torch.manual_seed(3)
        tr = sample_trajectories(env, pf, 400, **kw)
        d = (ts.log_pf.detach() - tr.log_pf.detach()[:, None]).abs()
        assert d.min(1).values.max() < 1e-12
        torch.testing.assert_close(tr.log_q, log_q[q][d.argmin(1)], rtol=0, atol=1e-12)

def test_on_policy_trajectories_take_the_on_policy_path():
    "log_q equal to log_pf (on-policy sampling): identical to the batch without log_q, and no ess_is key."
    env, pf, _, ts, _ = setup()
    params = [pf.logits]
    torch.manual_seed(0)
    tr = sample_trajectories(env, pf, 16)
    for L in (ReverseKL(), ForwardKL(log_shift=0.), Renyi(.5), Tsallis(2., log_shift=0.)):
        v1, d1 = L(tr, params)
        v0, d0 = L(LogProbBatch(tr.log_pf, tr.log_pb, tr.log_reward), params)
        assert torch.equal(flat_grad(v1, params), flat_grad(v0, params)) and d1 == d0 and 'ess_is' not in d1

# ------------------------------------------------------------------------------------------------ consistency, balance

def test_self_normalised_consistent_and_plain_flat():
    "Draws from tempered q, no CV: the self-normalised error falls ~1/N; the plain one stays at its noise level."
    env, pf, _, ts, log_q = setup()
    params = [pf.logits]
    J = score_matrix(ts, params)
    target = targets(ts, params)['reverse_kl']
    lq = log_q['temp']
    err = {}
    for w in IS_WEIGHTS:
        for N in (4, 32):
            idx = torch.multinomial(lq.exp(), N * 3000, True, generator=torch.Generator().manual_seed(N)).view(3000, N)
            G = torch.stack([batch_coefficients(ReverseKL(None, is_weights=w), ts, i, lq) @ J[i] for i in idx])
            err[w, N] = ((G.mean(0) - target).norm().item(), (G.var(0).sum() / 3000).sqrt().item())
    sn4, sn32 = err['self_normalized', 4], err['self_normalized', 32]
    assert sn4[0] > 5 * sn4[1] and sn4[0] / sn32[0] > 4, err          # biased at N = 4, ≥ 4x smaller at N = 32 (1/N: 8x)
    for N in (4, 32): assert err['plain', N][0] < 3 * err['plain', N][1], err   # ‖noise‖ ≈ s.e.: no bias beyond 3 of it

@pytest.mark.parametrize('w', IS_WEIGHTS)
def test_zero_gradient_at_balance_off_policy(w):
    "At p_F = p_B every batch from q gives a zero gradient with both control variates (weighted LOO, weighted â)."
    env = toy_dag(3, 3)
    pf_star, _ = balanced_table_policy(env)
    params = [pf_star.logits]
    for q in BEHAVIOUR.values():
        torch.manual_seed(1)
        for L in (ReverseKL(is_weights=w), ForwardKL(is_weights=w), ForwardKL(self_normalized=True, is_weights=w),
                  Renyi(.5, is_weights=w), Renyi(-2., is_weights=w), Tsallis(.5, is_weights=w), Tsallis(2., is_weights=w)):
            tr = sample_trajectories(env, pf_star, 8, **q)
            assert not torch.equal(tr.log_q, tr.log_pf.detach())
            g = flat_grad(L(tr, params)[0], params)
            assert g.abs().max() < 1e-10, (type(L).__name__, w, q, g.abs().max())

def test_weighted_loo_baseline():
    "b_n = Σ_{j≠n} w_j f_j / Σ_{j≠n} w_j; uniform weights give the plain leave-one-out mean."
    f, lw = torch.tensor([1., 2., 6.]), torch.tensor([0., math.log(3.), math.log(2.)])
    torch.testing.assert_close(loo_baseline(f, lw), torch.tensor([(6 + 12) / 5, (1 + 12) / 3, (1 + 6) / 4]))
    torch.testing.assert_close(loo_baseline(f, torch.zeros(3)), loo_baseline(f))
    torch.testing.assert_close(loo_baseline(f, lw + 1e4), loo_baseline(f, lw))   # log space: no overflow

def test_divergence_losses_accept_off_policy_and_report_ess_is():
    "on_policy is False for the four divergences; off-policy batches report ess_is = (Σω)²/Σω² as a float."
    env, pf, _, ts, _ = setup()
    params = [pf.logits]
    torch.manual_seed(4)
    tr = sample_trajectories(env, pf, 32, epsilon=.3)
    lw = tr.log_pf.detach() - tr.log_q
    want = (lw.exp().sum() ** 2 / (2 * lw).exp().sum()).item()
    for cls in (ReverseKL, ForwardKL, Renyi, Tsallis):
        assert cls.on_policy is False
        for w in IS_WEIGHTS:
            v, d = cls(is_weights=w)(tr, params)
            assert all(type(x) is float and math.isfinite(x) for x in d.values()), d
            assert math.isclose(d['ess_is'], want, rel_tol=1e-9) and 1 < d['ess_is'] < 32
    with pytest.raises(ValueError, match="is_weights must be one of"): Renyi(.5, is_weights='snis')
    with pytest.raises(ValueError, match="traj.log_q"): ReverseKL()(LogProbBatch(tr.log_pf, tr.log_pb, tr.log_reward, tr.log_q[:3]), params)
    with pytest.raises(ValueError, match="traj.log_q"):
        ReverseKL()(LogProbBatch(tr.log_pf, tr.log_pb, tr.log_reward, torch.full_like(tr.log_q, math.nan)), params)
