"""Heavier tests of the divergence estimators (nbs/05_estimators.ipynb) and control variates (nbs/06).

Fast tests run always (about 35 s of CPU on one thread); the long statistical ones need RUN_SLOW=1.
Exact references come from full trajectory enumeration in float64 (nbs/04_divergences.ipynb); the test beds and
`max_abs_t` from gfn_nbdev.testing (nbs/09_testing.ipynb).
"""
import json, math, os, warnings
import pytest
import torch
from gfn_nbdev.core import *
from gfn_nbdev.exact import *
from gfn_nbdev.divergences import *
from gfn_nbdev.estimators import *
from gfn_nbdev.control_variates import *
from gfn_nbdev.testing import max_abs_t, toy_dag, layered_dag
from conftest import slow

pytestmark = pytest.mark.usefixtures('float64')   # exact references in float64 (tests/conftest.py)

def setup(h=3, w=3, seed=0, pb=False):
    "Grid DAG, random tabular p_F (and p_B if asked), the exact trajectory set."
    env = toy_dag(h, w, seed=seed)
    g = torch.Generator().manual_seed(seed)
    pf = TablePolicy(env, torch.randn(env.M, env.n_actions, generator=g))
    pbk = TablePolicy(env, torch.randn(env.M, env.n_bactions, generator=g), backward=True) if pb else None
    return env, pf, pbk, enumerate_trajectories(env, pf, pbk)

def make(name, cv='loo+sf', alpha=0.5, sf_coef='crossfit', **kw):
    return dict(reverse_kl=lambda: ReverseKL(cv, sf_coef), forward_kl=lambda: ForwardKL(cv, sf_coef=sf_coef, **kw),
                renyi=lambda: Renyi(alpha, cv, sf_coef, **kw), tsallis=lambda: Tsallis(alpha, cv, sf_coef=sf_coef, **kw))[name]()

def factor(name, loss, log_Z, alpha):
    "The known positive constant between E[estimate] and sign(α)·∇D (per divergence)."
    c = loss.log_shift.item() if hasattr(loss, 'log_shift') and not math.isnan(loss.log_shift.item()) else 0.
    if name == 'forward_kl' and not getattr(loss, 'self_normalized', True): return math.exp(log_Z - c)
    if name == 'tsallis': return math.exp((alpha - 1) * (c - log_Z))
    return 1.

# ---------------------------------------------------------------------------------------------- exact (fast)

@pytest.mark.parametrize('shape,seed', [((3, 3), 0), ((4, 4), 1), ((2, 5), 2)])
@pytest.mark.parametrize('alpha', [-2., 0.5, 2., 3.])
def test_exact_set_gradient_equals_exact_divergence_gradient(shape, seed, alpha):
    "On an exact set the surrogate's value is the exact divergence and its gradient the exact one times the factor."
    env, pf, pb, ts = setup(*shape, seed=seed, pb=True)
    D = trajectory_divergences(ts, alpha)
    sg = math.copysign(1., alpha)
    params = [pf.logits, pb.logits]
    for name in ('reverse_kl', 'forward_kl', 'renyi', 'tsallis'):
        for kw in ([{}, dict(self_normalized=True)] if name == 'forward_kl' else [{}]):
            L = make(name, alpha=alpha, **kw)
            v, diag = L(ts, params)
            s = sg if name in ('renyi', 'tsallis') else 1.
            want = factor(name, L, log_Z_of(ts).item(), alpha) * s * flat_grad(D[name], params)
            got = flat_grad(v, params)
            assert torch.allclose(got, want, rtol=1e-9, atol=1e-11 * want.abs().max()), (name, kw)
            assert math.isclose(diag['loss'], s * D[name].item(), rel_tol=1e-9, abs_tol=1e-12), (name, kw)
            assert math.isclose(diag['log_Z_hat'], log_Z_of(ts).item(), rel_tol=1e-12)

@pytest.mark.parametrize('shape', [(3, 3), (4, 4), (3, 5)])
def test_zero_gradient_at_balance_every_batch(shape):
    "p_F = p_B: with both control variates every batch gives exactly zero gradient, for every estimator and alpha."
    env = toy_dag(*shape, seed=3)
    pf, _ = balanced_table_policy(env)
    ts = enumerate_trajectories(env, pf)
    gen = torch.Generator().manual_seed(0)
    for L in (ReverseKL(), ForwardKL(), ForwardKL(self_normalized=True), Renyi(0.5), Renyi(-2.), Renyi(3.),
              Tsallis(0.5), Tsallis(2.), Tsallis(-1.)):
        G = gradient_samples(L, lambda: draw_from_set(ts, 6, gen), [pf.logits], 5)
        assert G.abs().max() < 1e-10, L
        assert flat_grad(L(ts)[0], [pf.logits]).abs().max() < 1e-10, L

def test_log_shift_is_checkpointed_and_never_reset():
    env, pf, _, ts = setup()
    for L in (ForwardKL('loo'), Tsallis(0.5, 'loo')):
        b1 = draw_from_set(ts, 8, torch.Generator().manual_seed(0))
        L(b1)
        c = L.log_shift.item()
        assert c == b1.log_reward.max().item()
        L(LogProbBatch(ts.log_pf[:3], ts.log_pb[:3], ts.log_reward[:3] + 50.))   # a batch with larger rewards
        assert L.log_shift.item() == c
        sd = L.state_dict()
        L2 = type(L)(**({'alpha': 0.5} if isinstance(L, Tsallis) else {}), cv='loo')
        L2.load_state_dict(sd)
        assert L2.log_shift.item() == c
        v1, v2 = L(b1)[0], L2(b1)[0]
        assert torch.allclose(flat_grad(v1, [pf.logits]), flat_grad(v2, [pf.logits]))

def test_given_log_shift_is_used():
    env, pf, _, ts = setup()
    L = Tsallis(0.5, log_shift=3.)
    L(ts)
    assert L.log_shift.item() == 3.

@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_no_nan_or_inf_for_extreme_log_ratios(dtype):
    "Random batches with |l| up to 1e4 (and shifts far from the data): finite values and gradients."
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        N = int(torch.randint(2, 40, (1,), generator=g))
        scale = float(10 ** torch.empty(1).uniform_(0, 4, generator=g))
        theta = torch.zeros(4, dtype=dtype, requires_grad=True)
        X = torch.randn(N, 4, generator=g).to(dtype)
        lpf = X @ theta + (torch.rand(N, generator=g).to(dtype) * 2 - 1) * scale
        lr = (torch.rand(N, generator=g).to(dtype) * 2 - 1) * scale
        b = LogProbBatch(lpf, torch.zeros(N, dtype=dtype), lr)
        for name in ('reverse_kl', 'forward_kl', 'renyi', 'tsallis'):
            for alpha in (-2., 0.5, 2.):
                for cv in CV_NAMES:
                    L = make(name, cv, alpha)
                    with warnings.catch_warnings():
                        warnings.simplefilter('ignore')
                        v, d = L(b, [theta])
                    gr, = torch.autograd.grad(v, theta, retain_graph=True)
                    assert torch.isfinite(v) and torch.isfinite(gr).all(), (trial, name, alpha, cv, v, gr)
                    assert all(math.isfinite(x) for k, x in d.items() if k != 'cv_coef'), (trial, name, d)

def test_cv_coefficient_is_one_for_reverse_kl():
    env, pf, _, ts = setup()
    gen = torch.Generator().manual_seed(0)
    for N in (2, 5, 17):
        assert ReverseKL()(draw_from_set(ts, N, gen), [pf.logits])[1]['cv_coef'] == 1.

def test_diagnostics_ess_and_log_Z_hat():
    "ESS = (Σw)²/Σw² of the weights; log Ẑ = logmeanexp(−l)."
    l = torch.tensor([-1., -2., -4., 0.5])
    b = LogProbBatch(l.clone().requires_grad_(), torch.zeros(4), torch.zeros(4))
    d = ReverseKL('loo')(b)[1]
    w = (-l).exp()
    assert math.isclose(d['ess'], (w.sum() ** 2 / (w * w).sum()).item(), rel_tol=1e-12)
    assert math.isclose(d['log_Z_hat'], (torch.logsumexp(-l, 0) - math.log(4)).item(), rel_tol=1e-12)
    g = (-0.5 * l).exp()
    assert math.isclose(Renyi(0.5, 'loo')(b)[1]['ess'], (g.sum() ** 2 / (g * g).sum()).item(), rel_tol=1e-12)

# ----------------------------------------------------------------------------------- sampled (fast)

@pytest.mark.parametrize('name,cv,kw', [('reverse_kl', 'loo+sf', {}), ('forward_kl', 'loo', {}), ('tsallis', 'loo', {}),
                                        ('tsallis', 'loo+sf', {})])
def test_unbiased_through_the_real_sampler(name, cv, kw):
    "300 batches of 8 from sample_trajectories: every varying coordinate within 4.5 s.e. of the exact gradient."
    env, pf, _, ts = setup()
    L = make(name, cv, **kw)
    L(ts)                                                                # fixes the shift on the exact set
    target = factor(name, L, log_Z_of(ts).item(), .5) * flat_grad(trajectory_divergences(ts, .5)[name], [pf.logits])
    torch.manual_seed(11)
    G = gradient_samples(L, lambda: sample_trajectories(env, pf, 8), [pf.logits], 300)
    t, k = max_abs_t(G, target)
    assert t < 4.5 and k >= 15, (t, k)

def test_pathwise_learned_backward_sampled():
    "Tsallis with a learned p_B, sampled through sample_trajectories(pb=...): unbiased for the p_B parameters too."
    env, pf, pb, ts = setup(pb=True)
    L = Tsallis(0.5, 'loo')
    L(ts)
    target = factor('tsallis', L, log_Z_of(ts).item(), .5) * flat_grad(trajectory_divergences(ts, .5)['tsallis'], [pb.logits])
    torch.manual_seed(12)
    G = gradient_samples(L, lambda: sample_trajectories(env, pf, 8, pb=pb), [pf.logits, pb.logits], 300)
    t, k = max_abs_t(G[:, pf.logits.numel():], target)
    assert t < 4.5 and k >= 5, (t, k)

@pytest.mark.parametrize('name', ['reverse_kl', 'forward_kl', 'renyi', 'tsallis'])
def test_training_decreases_the_exact_divergence(name):
    "End to end: on-policy sampling + estimator + Adam lowers the exact divergence on the grid DAG."
    env, pf, _, ts = setup(3, 3, seed=4)
    D0 = trajectory_divergences(ts, .5)[name].item()
    L = make(name, 'loo+sf')
    opt = torch.optim.Adam(pf.parameters(), lr=0.05)
    torch.manual_seed(0)
    for _ in range(150):
        v, _ = L(sample_trajectories(env, pf, 16), [pf.logits])
        opt.zero_grad(); v.backward(); opt.step()
    D1 = trajectory_divergences(enumerate_trajectories(env, pf), .5)[name].item()
    assert D1 < 0.25 * D0, (D0, D1)

# ------------------------------------------------------------- score-function CV: cross-fitted vs same-batch â

def mlp_bed(seed=0):
    "The 50-state random layered DAG of nbs/06 with a 2x32 MLP policy at its (seeded) initialisation, and its exact set."
    env = layered_dag(seed)
    torch.manual_seed(seed)
    pf = DiscretePolicy(env, MLP(env.M, env.n_actions, hidden=32))
    return env, pf, list(pf.parameters()), enumerate_trajectories(env, pf)

def exact_target(name, L, ts, params, alpha=0.5):
    "The exact gradient times the estimator's known factor (Tsallis: its fixed shift must be set)."
    return factor(name, L, log_Z_of(ts).item(), alpha) * flat_grad(trajectory_divergences(ts, alpha)[name], params)

def projection_t(L, ts, params, target, N, M, n_dirs=4, seed=1):
    "t statistics of the mean of M gradients (batches of N) against `target`, along target and n_dirs random directions."
    gen = torch.Generator().manual_seed(seed)
    G = gradient_samples(L, lambda: draw_from_set(ts, N, gen), params, M)            # (M, P)
    U = torch.cat([target[None], torch.randn(n_dirs, len(target), generator=torch.Generator().manual_seed(100))])
    U = U / U.norm(dim=1, keepdim=True)                                  # (1 + n_dirs, P) unit directions
    proj = G @ U.T                                                       # (M, 1 + n_dirs)
    t = (proj.mean(0) - U @ target) / (proj.std(0) / math.sqrt(M))
    return t, (proj[:, 0].mean() / target.norm()).item()

# (cv, sf_coef, sf_params), None: the default; 'crossfit': the default loss (cross-fitted â from every parameter),
# 'crossfit_last': â from the final layer's scores, 'batch': the paper's same-batch â
SF_VARIANTS = dict(batch=('loo+sf', 'batch', 'all'), crossfit=(None, None, None), crossfit_last=('loo+sf', 'crossfit', 'last'),
                   loo=('loo', 'crossfit', 'all'))

def check_projections(name, N, M):
    env, pf, params, ts = mlp_bed()
    def mk(cv, sc, sp):                                                  # None: the constructor's default
        kw = {k: v for k, v in dict(cv=cv, sf_coef=sc, sf_params=sp).items() if v is not None}
        return (Tsallis(0.5, log_shift=ts.log_reward.max().item(), **kw) if name == 'tsallis' else Renyi(0.5, **kw))
    target = exact_target(name, mk(None, None, None), ts, params)
    res = {k: projection_t(mk(*v), ts, params, target, N, M) for k, v in SF_VARIANTS.items()}
    # Tolerance |t| < 4: 3 variants x 5 directions per divergence, 30 statistics over both; the trajectory space is
    # finite, so the gradients are bounded and t over 300+ batches is close to N(0, 1): P(any |t| > 4) < 2e-3.
    for k in ('crossfit', 'crossfit_last', 'loo'):
        t, ratio = res[k]
        assert t.abs().max() < 4, (name, N, k, t, ratio)
    t, ratio = res['batch']                                              # the same test flags the same-batch â
    assert t[0] > 4 and ratio > 1.1, (name, N, t, ratio)
    return res

@pytest.mark.parametrize('name', ['tsallis', 'renyi'])
def test_sf_crossfit_unbiased_on_an_mlp_policy(name):
    """2x32 MLP policy on a 50-state layered DAG, 300 batches of 256: with the cross-fitted â (the default, from every
    parameter's scores; and from the final layer's, sf_params='last') and with LOO alone the mean gradient matches the
    exact one along its direction and 4 random ones; the same-batch â is ~1.2x too long along it. Its bias does not
    shrink with N while the standard error does, so N = 256 gives the test power."""
    check_projections(name, N=256, M=300)

def test_score_vjps_batched_equals_separate_passes_through_the_sampler():
    "The batched VJP (used on CUDA) and the separate passes (CPU) agree on a real sampler graph with an MLP policy."
    env, pf, params, _ = mlp_bed()
    torch.manual_seed(3)
    tr = sample_trajectories(env, pf, 9)
    V = torch.randn(4, 9)
    a, b = score_vjps(tr.log_pf, params, V, batched=True), score_vjps(tr.log_pf, params, V, batched=False)
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb): assert torch.allclose(x, y, rtol=1e-10, atol=1e-12)
    J = torch.stack([flat_grad(tr.log_pf[n], params) for n in range(9)])            # (N, P) per-sample scores
    assert torch.allclose(torch.stack([torch.cat([x.flatten() for x in r]) for r in a]), V @ J, atol=1e-10)

def test_score_reduce_reaches_every_sf_path():
    """`DivergenceLoss.score_reduce` (the hook the distributed trainer sets to the rank mean) sees every score sum the
    estimator uses. Scaling all sums by c leaves â unchanged (a ratio of sums); on the 'all' path the estimate is a
    combination of the sums, so the gradient scales by c exactly; the general paths ('last', off-policy) take their
    gradient from the surrogate's own backward, so it does not change. A reducer that ignored some path, or a path that
    ignored the reducer, breaks one of these equalities (c = 3 is far from 1: a missed path moves the gradient by 3x)."""
    env, pf, params, _ = mlp_bed()
    torch.manual_seed(5)
    on, off = sample_trajectories(env, pf, 10), sample_trajectories(env, pf, 10, epsilon=0.3)
    calls = []
    def times3(rows):
        calls.append(len(rows)); return [[3 * g for g in r] for r in rows]
    for cls in (Renyi, lambda **kw: Tsallis(log_shift=0., **kw)):
        for sc, k in (('crossfit', 4), ('batch', 2)):
            for sp, b, scale in (('all', on, 3.), ('last', on, 1.), ('all', off, 1.)):
                L0, L1 = cls(sf_coef=sc, sf_params=sp), cls(sf_coef=sc, sf_params=sp)
                L1.score_reduce = times3
                (v0, d0), (v1, d1) = L0(b, params), L1(b, params)
                g0, g1 = flat_grad(v0, params), flat_grad(v1, params)
                assert calls.pop() == k and not calls                      # called once per batch, on the k sums
                assert math.isclose(d1['cv_coef'], d0['cv_coef'], rel_tol=1e-12), (sc, sp, d0, d1)
                assert torch.allclose(g1, scale * g0, rtol=1e-10, atol=1e-12 * g0.abs().max().item()), (sc, sp)

def test_sf_coef_option_and_errors():
    env, pf, _, ts = setup()
    for cls in (ReverseKL, ForwardKL, Renyi, Tsallis):
        assert cls().sf_coef == 'crossfit' and cls(sf_coef='batch').sf_coef == 'batch'
        with pytest.raises(ValueError, match=r"sf_coef must be one of \('crossfit', 'batch'\), got 'paper'"):
            cls(sf_coef='paper')
        assert cls().sf_params == 'all' and cls(sf_params='last').sf_params == 'last'
        with pytest.raises(ValueError, match=r"sf_params must be one of \('all', 'last'\), got 'first'"):
            cls(sf_params='first')
    one = draw_from_set(ts, 1, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="sf_coef='crossfit' .* needs N >= 2 trajectories, got N=1"):
        Tsallis(0.5, 'sf')(one, [pf.logits])
    assert math.isfinite(Tsallis(0.5, 'sf', sf_coef='batch')(one, [pf.logits])[1]['cv_coef'])
    b = draw_from_set(ts, 2, torch.Generator().manual_seed(0))               # N = 2: halves of one trajectory
    v, d = Renyi(0.5, 'sf')(b, [pf.logits])
    assert d['cv_coef'] == 1.                                            # a single weight normalised in its half: 1

@pytest.mark.parametrize('name', ['reverse_kl', 'forward_kl', 'renyi', 'tsallis'])
def test_diagnostics_are_json_floats(name):
    "Every diagnostic is a finite float (cv_coef absent when no â is computed): JSON without NaN."
    env, pf, _, ts = setup()
    b = draw_from_set(ts, 6, torch.Generator().manual_seed(0))
    default = dict(reverse_kl=ReverseKL, forward_kl=ForwardKL, renyi=Renyi, tsallis=Tsallis)[name]()
    json.dumps(default(b, [pf.logits])[1], allow_nan=False)             # the forward KL reported cv_coef = NaN
    for cv in CV_NAMES:
        for sc in SF_COEFS:
            d = make(name, cv, sf_coef=sc)(b, [pf.logits])[1]
            json.dumps(d, allow_nan=False)
            assert all(type(v) is float for v in d.values()), (name, cv, d)
            assert ('cv_coef' in d) == (cv in ('sf', 'loo+sf') and name != 'forward_kl'), (name, cv, d)

def test_coefficient_study_runs_from_the_library():
    "control_variates.coefficient_study used `tensor`, imported only in a hidden notebook cell: NameError from the library."
    env, pf, _, ts = setup()
    rows = coefficient_study(Renyi(0.5), ts, [pf.logits], [4], 5)          # raised NameError: name 'tensor'
    assert rows[0]['N'] == 4 and math.isfinite(rows[0]['mean'])
    for sc in SF_COEFS:
        rows = coefficient_study(Renyi(0.5, sf_coef=sc), ts, [pf.logits], [4, 8], 20)
        assert [r['N'] for r in rows] == [4, 8] and all(math.isfinite(r['mean']) and r['se'] > 0 for r in rows)

# ------------------------------------------------------------------------------------------------- slow

@slow
@pytest.mark.parametrize('name,cv,kw', [(n, cv, {}) for n in ('reverse_kl', 'forward_kl', 'tsallis') for cv in (None, 'loo')]
                         + [('reverse_kl', 'loo+sf', {}), ('reverse_kl', 'sf', {})])
def test_unbiased_many_batches(name, cv, kw):
    "2000 batches of 4 on the 4x4 grid DAG (68 trajectories): max |t| over the varying coordinates below 4.5."
    env, pf, _, ts = setup(4, 4, seed=1)
    L = make(name, cv, **kw)
    L(ts)
    target = factor(name, L, log_Z_of(ts).item(), .5) * flat_grad(trajectory_divergences(ts, .5)[name], [pf.logits])
    gen = torch.Generator().manual_seed(5)
    G = gradient_samples(L, lambda: draw_from_set(ts, 4, gen), [pf.logits], 2000)
    t, k = max_abs_t(G, target)
    assert t < 4.5, (t, k)

@slow
@pytest.mark.parametrize('name,kw', [('renyi', {}), ('forward_kl', dict(self_normalized=True))])
def test_consistent_estimators_bias_shrinks_like_one_over_N(name, kw):
    "Bias of the self-normalised estimators at N = 8, 16, 32, 64 with 20000 batches: falls about 2x per doubling."
    env, pf, _, ts = setup()
    L = make(name, None, **kw)
    target = flat_grad(trajectory_divergences(ts, .5)[name], [pf.logits])
    J = score_matrix(ts, [pf.logits]); p = ts.log_pf.detach().exp()
    bias = {}
    for N in (8, 16, 32, 64):
        M = 20000
        idx = torch.multinomial(p, N * M, True, generator=torch.Generator().manual_seed(N)).view(M, N)
        G = torch.stack([batch_coefficients(L, ts, i) @ J[i] for i in idx])
        bias[N] = (G.mean(0) - target).norm().item()
        se = (G.var(0).sum() / M).sqrt().item()
        assert bias[N] > 2 * se or N == 64, (N, bias[N], se)
    assert bias[8] > bias[16] > bias[32]
    assert 2.5 < bias[8] / bias[32] < 8, bias                           # ~4 for a 1/N bias

@slow
def test_control_variates_reduce_variance_on_sets():
    "The paper's task at initialisation: loo+sf lowers the trace for every divergence at N = 32 and 128."
    from gfn_nbdev.tasks.sets import SetGeneration
    torch.set_default_dtype(torch.float32)
    env = SetGeneration(32, 16, seed=0)
    torch.manual_seed(0)
    pf = env.policy(hidden=64)
    L = {(d, cv): mk for d, cv, mk in [(d, cv, make(d, cv)) for d in ('reverse_kl', 'renyi', 'tsallis') for cv in (None, 'loo+sf')]}
    rows = gradient_variance(env, pf, L, [32, 128], 60)
    red = reduction_factors(rows)
    for (d, N), r in red.items():
        assert r > (50 if d == 'reverse_kl' else 1.5), (d, N, r)

@slow
@pytest.mark.parametrize('name', ['tsallis', 'renyi'])
def test_sf_crossfit_unbiased_on_an_mlp_policy_N64(name):
    "As the fast test at N = 64 (the bias of the same-batch â is the same, the s.e. twice as large): 1200 batches."
    check_projections(name, N=64, M=1200)

# ------------------------------------------------------------------- per-layer score sums (nbs/05, issue 13)

import gfn_nbdev.estimators as _est

def _flat_rows(rows): return torch.stack([torch.cat([g.reshape(-1) for g in r]) for r in rows])

def _loss_grad(loss, tr, params, fast=True):
    "The gradient of `loss` on `tr`, through the per-layer sums (`fast`) or with the batch's capture removed (score_vjps)."
    cap = tr.capture
    if not fast: tr.capture = None
    try: v, _ = loss(tr, params)
    finally: tr.capture = cap
    return torch.cat([g.flatten() for g in torch.autograd.grad(v, params, retain_graph=True)])

@pytest.fixture
def fast_calls(monkeypatch):
    "The number of times each call of the per-layer sums returned sums (not None), as a list of booleans."
    calls, orig = [], _est.capture_score_sums
    monkeypatch.setattr(_est, 'capture_score_sums', lambda *a: (lambda r: calls.append(r is not None) or r)(orig(*a)))
    return calls

def _task(task, hidden=16):
    from gfn_nbdev.tasks.hypergrid import HyperGrid
    from gfn_nbdev.tasks.sets import SetGeneration
    env = dict(hypergrid=lambda: HyperGrid(2, 4), sets=lambda: SetGeneration(n_items=6, set_size=3))[task]()
    torch.manual_seed(0)
    return env, env.policy(hidden=hidden)

@pytest.mark.parametrize('task', ['hypergrid', 'sets'])
@pytest.mark.parametrize('epsilon', [0., 0.2])
@pytest.mark.parametrize('dense', [True, False])
def test_capture_score_sums_equal_score_vjps(task, epsilon, dense, monkeypatch):
    """For an MLP DiscretePolicy (float64), the per-layer sums of the sampler's capture equal score_vjps's backward
    passes for the cross-fitted rows (two disjoint halves), the 'batch' rows (every record) and random rows, to 1e-10
    relative (they differ by summation order only: ~1e-15); with one product per layer over every record (`dense`, what
    these small layers get by default) and with products per group of records (what large layers get)."""
    monkeypatch.setattr(_est, 'DENSE_MACS', 2 ** 62 if dense else 0)
    env, pf = _task(task)
    params = list(pf.parameters())
    tr = sample_trajectories(env, pf, 10, epsilon=epsilon)
    assert tr.capture is not None and _est._capture_of(tr, tr.log_pf) is tr.capture
    one = (torch.arange(10) < 5).double()
    h = torch.rand(10, generator=torch.Generator().manual_seed(1))
    for V in (torch.stack([one, 1 - one, h * one, h * (1 - one)]), torch.stack([torch.ones(10), h]),
              torch.randn(3, 10, generator=torch.Generator().manual_seed(2))):
        fast, ref = _flat_rows(capture_score_sums(tr.capture, V, params)), _flat_rows(score_vjps(tr.log_pf, params, V))
        assert (fast - ref).norm() <= 1e-10 * ref.norm()

@pytest.mark.parametrize('task', ['hypergrid', 'sets'])
@pytest.mark.parametrize('dense', [True, False])
def test_merged_score_sums_equal_score_vjps(task, dense, monkeypatch):
    """Records of one state share their layer inputs, so the per-layer sums may add up g over them before the product
    (on by default for products over MERGE_ROWS records or more). With every qualifying product merged (MERGE_ROWS = 0;
    a 64-wide MLP, whose hidden layer qualifies), the sums equal score_vjps's to 1e-10 relative for the cross-fitted,
    'batch' and random rows, and merging did happen, with fewer rows than records, in every call."""
    monkeypatch.setattr(_est, 'DENSE_MACS', 2 ** 62 if dense else 0)
    monkeypatch.setattr(_est, 'MERGE_ROWS', 0)
    merged, orig = [], _est._repeats
    monkeypatch.setattr(_est, '_repeats', lambda s: (lambda r: merged.append(r is not None and len(r[1]) < len(s)) or r)(orig(s)))
    env, pf = _task(task, hidden=64)
    params = list(pf.parameters())
    tr = sample_trajectories(env, pf, 64)
    one = (torch.arange(64) < 32).double()
    h = torch.rand(64, generator=torch.Generator().manual_seed(1))
    for V in (torch.stack([one, 1 - one, h * one, h * (1 - one)]), torch.stack([torch.ones(64), h]),
              torch.randn(3, 64, generator=torch.Generator().manual_seed(2))):
        merged.clear()
        fast, ref = _flat_rows(capture_score_sums(tr.capture, V, params)), _flat_rows(score_vjps(tr.log_pf, params, V))
        assert merged and all(merged), merged
        assert (fast - ref).norm() <= 1e-10 * ref.norm()

@pytest.mark.parametrize('task', ['hypergrid', 'sets'])
@pytest.mark.parametrize('epsilon', [0., 0.2])
@pytest.mark.parametrize('sf_coef', ['crossfit', 'batch'])
@pytest.mark.parametrize('name', ['renyi', 'tsallis'])
def test_fast_score_sums_give_the_old_gradient(task, epsilon, sf_coef, name, fast_calls):
    """The whole loss gradient (Renyi/Tsallis, cv='loo+sf', sf_params='all'; on-policy and ε-off-policy; cross-fitted and
    batch â) through the per-layer sums equals the one through score_vjps to 1e-10, on the batch that is checked and on
    a later one, which is trusted without a check; the per-layer sums were computed on both."""
    env, pf = _task(task)
    params, loss = list(pf.parameters()), make(name, sf_coef=sf_coef, sf_params='all')
    for b in range(2):
        tr = sample_trajectories(env, pf, 10, epsilon=epsilon)
        fast_calls.clear()
        g_fast, g_old = _loss_grad(loss, tr, params), _loss_grad(loss, tr, params, fast=False)
        assert fast_calls == [True]
        assert (g_fast - g_old).norm() <= 1e-10 * g_old.norm(), (b, (g_fast - g_old).norm().item())
    assert _est._FAST_CHECKED[loss][pf] is True

def test_fast_score_sums_are_reduced():
    """score_reduce (the distributed hook) applies to the per-layer sums: scaling them by 3 scales the 'all' gradient by 3
    on a trusted (second) batch, as on the score_vjps path."""
    env, pf = _task('hypergrid')
    params, loss = list(pf.parameters()), Renyi(0.5, sf_params='all')
    _loss_grad(loss, sample_trajectories(env, pf, 10), params)                      # the check
    tr = sample_trajectories(env, pf, 10)
    g = _loss_grad(loss, tr, params)
    loss.score_reduce = lambda rows: [[3 * t for t in r] for r in rows]
    g3, g3_old = _loss_grad(loss, tr, params), _loss_grad(loss, tr, params, fast=False)
    assert torch.allclose(g3, 3 * g, rtol=1e-10, atol=0) and torch.allclose(g3, g3_old, rtol=1e-10, atol=1e-14)

def test_mixture_policy_takes_the_fast_path():
    "The continuous MixturePolicy's parameters are all nn.Linear of its MLP, applied row by row: the per-layer sums apply and are exact."
    from gfn_nbdev.tasks.continuous import CoordinateEnv
    env = CoordinateEnv('mixture')
    torch.manual_seed(0)
    pf = env.policy(hidden=16)
    params = list(pf.parameters())
    tr = sample_trajectories(env, pf, 8)
    V = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    fast = capture_score_sums(tr.capture, V, params)
    assert fast is not None
    ref = _flat_rows(score_vjps(tr.log_pf, params, V))
    assert (_flat_rows(fast) - ref).norm() <= 1e-10 * ref.norm()

def test_fallback_for_a_gnn_policy(fast_calls):
    """The DAG GNN has a parameter outside any nn.Linear (its node embeddings) and applies its layers to (N, d, H)
    tensors: the per-layer sums decline (None), the loss falls back to score_vjps, exactly, and records no check."""
    from gfn_nbdev.tasks.dags import DAGEnv
    env = DAGEnv(d=3, n_samples=20)
    torch.manual_seed(0)
    pf = env.policy(hidden=8, kind='gnn')
    params, loss = list(pf.parameters()), Renyi(0.5, sf_params='all')
    tr = sample_trajectories(env, pf, 8)
    assert tr.capture is not None
    assert capture_score_sums(tr.capture, torch.ones(2, 8), params) is None
    fast_calls.clear()
    g, g_old = _loss_grad(loss, tr, params), _loss_grad(loss, tr, params, fast=False)
    assert fast_calls == [False] and torch.equal(g, g_old)
    assert pf not in _est._FAST_CHECKED.get(loss, {})

def test_fallback_without_a_capture(fast_calls):
    """Batches with no capture (sample_backward scores with log_pf_of; a detached-and-rescored or sliced batch) or whose
    log_pf is not the captured one use score_vjps without trying the per-layer sums."""
    env, pf = _task('hypergrid')
    params, loss = list(pf.parameters()), Renyi(0.5, sf_params='all')
    x = sample_trajectories(env, pf, 6).x
    bt = sample_backward(env, env.backward_policy(), x, pf=pf)
    assert bt.capture is None
    tr = sample_trajectories(env, pf, 6)
    sliced = Trajectories(**{k: getattr(tr, k)[:4] for k in tr.__dataclass_fields__})
    assert sliced.capture is None
    tr.log_pf_steps = tr.log_pf_steps * 1.                                   # rebuilt: no longer the captured steps
    assert _est._capture_of(tr, tr.log_pf) is None
    fast_calls.clear()
    for b in (bt, sliced, tr): loss(b, params)
    assert fast_calls == []

def test_non_rowwise_policy_is_caught():
    """A policy that adds the batch mean of its hidden layer (so a record's output depends on the other records) breaks
    the per-layer formula: the check on the first batch warns, naming the policy, and the loss uses score_vjps for it
    from then on (exact gradient on that batch and the next, no second warning)."""
    class BatchMean(torch.nn.Module):
        def forward(self, x): return x + x.mean(0)
    from gfn_nbdev.tasks.hypergrid import HyperGrid
    env = HyperGrid(2, 4)
    torch.manual_seed(0)
    pf = DiscretePolicy(env, torch.nn.Sequential(torch.nn.Linear(env.encode(env.s0(1)).shape[1], 16), BatchMean(),
                                                 torch.nn.Tanh(), torch.nn.Linear(16, env.n_actions)))
    params, loss = list(pf.parameters()), Renyi(0.5, sf_params='all')
    tr = sample_trajectories(env, pf, 10)
    with pytest.warns(UserWarning, match='DiscretePolicy differ from score_vjps.*do not act row by row'):
        g = _loss_grad(loss, tr, params)
    assert _est._FAST_CHECKED[loss][pf] is False
    assert torch.allclose(g, _loss_grad(loss, tr, params, fast=False), rtol=1e-10, atol=1e-14)
    tr2 = sample_trajectories(env, pf, 10)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        g2 = _loss_grad(loss, tr2, params)
    assert torch.allclose(g2, _loss_grad(loss, tr2, params, fast=False), rtol=1e-10, atol=1e-14)

def test_fast_score_sums_final_layer(fast_calls):
    "sf_params='last' asks for the final layer's sums only: they come per layer too, and the gradient is the old path's."
    env, pf = _task('sets')
    params, loss = list(pf.parameters()), Tsallis(0.5, sf_params='last')
    for b in range(2):
        tr = sample_trajectories(env, pf, 10)
        fast_calls.clear()
        g_fast, g_old = _loss_grad(loss, tr, params), _loss_grad(loss, tr, params, fast=False)
        assert fast_calls == [True] and (g_fast - g_old).norm() <= 1e-10 * g_old.norm()

def test_divergence_step_reads_the_device_back_at_most_3_times():
    "One Renyi / Tsallis loss and backward with the cross-fitted score-function CV on a sampled batch reads values back from the device at most 3 / 4 times (on CUDA each read waits for all queued work): the finiteness test, where half B's records start (the halves' records are two blocks, so their groups need no search), the diagnostics (one transfer); Tsallis also its weight window. And it runs at most 190 ATen operations (views included; 216 / 206 before the halves' groups, the coefficients and the diagnostics were trimmed). Merging repeated states runs on the CPU only and is off here, as on CUDA."
    import gfn_nbdev.estimators as E
    from gfn_nbdev.tasks.hypergrid import HyperGrid
    from gfn_nbdev.testing import HostSyncs
    env = HyperGrid(4, 8)
    torch.manual_seed(0)
    pf = env.policy(hidden=64)
    params, old = list(pf.parameters()), E.MERGE_ROWS
    E.MERGE_ROWS = 10 ** 9
    try:
        for loss, budget in ((Renyi(0.5), 3), (Tsallis(0.5), 4)):
            loss(sample_trajectories(env, pf, 32), params)                # the first batch checks the per-layer sums once
            batch = sample_trajectories(env, pf, 32)
            with HostSyncs() as c:
                v, d = loss(batch, params)
                v.backward()
            assert c.total <= budget and c.ops <= 190, (type(loss).__name__, c.ops, dict(c.syncs))
            assert set(d) >= {'loss', 'log_Z_hat', 'ess', 'cv_coef'} and all(isinstance(x, float) for x in d.values()), d
    finally: E.MERGE_ROWS = old

def test_tsallis_shift_follows_its_buffer():
    "The fixed shift is read from the device only when its buffer changed, and a change (set, loaded) is always seen."
    L, lr = Tsallis(0.5), torch.tensor([1., 3.])
    assert L.shift(lr) == 3. and L.shift(torch.tensor([9.])) == 3.         # set once from the first batch, then kept
    L.load_state_dict({**L.state_dict(), 'log_shift': torch.tensor(5., dtype=torch.float64)})
    assert L.shift(lr) == 5.
    L.log_shift.fill_(7.)
    assert L.shift(lr) == 7.

def test_tsallis_built_under_inference_mode():
    "A Tsallis loss made under torch.inference_mode (its buffer then has no version counter) still sets and keeps its shift."
    with torch.inference_mode(): L = Tsallis(0.5)
    with torch.inference_mode():
        assert L.shift(torch.tensor([1., 3.])) == 3. and L.shift(torch.tensor([9.])) == 3.
