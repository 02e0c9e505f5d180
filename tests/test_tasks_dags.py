"Heavier checks of the DAG structure-learning task (gfn_nbdev.tasks.dags): statistics, exhaustive score checks, fuzzing."
import math
import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal as MVN, Wishart
from gfn_nbdev.core import *
from gfn_nbdev.evaluation import chi2_quantile
from gfn_nbdev.exact import *
from gfn_nbdev.tasks.dags import *

def chi2_test(counts, expected, level=0.999, min_expected=5.):
    "Pearson's statistic with cells of expected count < min_expected binned together, and the `level` quantile."
    big = expected >= min_expected
    c, e = counts[big].double(), expected[big]
    if (~big).any(): c, e = torch.cat([c, counts[~big].double().sum()[None]]), torch.cat([e, expected[~big].sum()[None]])
    return ((c - e) ** 2 / e).sum().item(), chi2_quantile(len(e) - 1, level)

def term_index(env, x):
    return torch.searchsorted(env.state_key(env.terminal_states()), env.state_key(x))

def random_states(env, n, gen=None):
    "Every state along n uniform random walks that add edges until none can be added."
    s, out = env.s0(n), [env.s0(n)]
    while True:
        m = env.forward_mask(s)[:, :-1]
        s, m = s[m.any(1)], m[m.any(1)]
        if not len(s): return torch.cat(out)
        s = env.step(s, torch.multinomial(m.float(), 1, generator=gen)[:, 0])
        out.append(s)

def has_cycle(a):
    d, state = len(a), [0] * len(a)
    def dfs(u):
        state[u] = 1
        for v in range(d):
            if a[u][v] and (state[v] == 1 or (state[v] == 0 and dfs(v))): return True
        state[u] = 2; return False
    return any(state[u] == 0 and dfs(u) for u in range(d))

# ------------------------------------------------------------------------------------------- exact p_T vs sampling
@pytest.mark.parametrize('d,kind', [(4, 'mlp'), (3, 'gnn')])
def test_exact_pt_matches_samples(d, kind):
    "10^5 trajectories of an untrained policy: chi-square goodness of fit at level 0.001 (rare DAGs binned, E >= 5)."
    torch.manual_seed(0)
    env = DAGEnv(d)
    pf = env.policy(hidden=32, kind=kind)
    with torch.no_grad():
        pt = exact_log_pt(env, pf).exp().double()
        tr = sample_trajectories(env, pf, 100_000)
    assert abs(pt.sum().item() - 1) < 1e-5
    counts = torch.bincount(term_index(env, tr.x), minlength=len(pt))
    stat, q = chi2_test(counts, 1e5 * pt)
    assert stat < q, (stat, q)
    if kind == 'mlp':   # the sampler's per-step log p_F agrees with a re-scoring of the same trajectories
        with torch.no_grad(): assert torch.allclose(log_pf_of(env, pf, tr), tr.log_pf_steps, atol=1e-5)

def test_trajectory_enumeration_d4():
    "Every trajectory of d = 4: |E|! per DAG, uniform p_B(.|G) normalised, DP = sum over trajectories (float64)."
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        env = DAGEnv(4)
        pf = env.policy(hidden=16, kind='gnn')
        with torch.no_grad():
            ts = enumerate_trajectories(env, pf)
            pt = exact_log_pt(env, pf).exp()
        K = len(env.terminal_states())
        n_edges = env.terminal_states()[:, 0].flatten(1).sum(1)
        assert torch.equal(torch.bincount(ts.x_index, minlength=K), torch.tensor([math.factorial(k) for k in n_edges.tolist()]))
        assert torch.allclose(torch.zeros(K).index_add(0, ts.x_index, ts.log_pb.exp()), torch.ones(K), atol=1e-12)
        assert torch.allclose(torch.zeros(K).index_add(0, ts.x_index, ts.log_pf.exp()), pt, atol=1e-12)
        assert abs(pt.sum().item() - 1) < 1e-12
    finally:
        torch.set_default_dtype(torch.float32)

def test_exact_d5():
    torch.manual_seed(0)
    env = DAGEnv(5)
    with torch.no_grad(): pt = exact_log_pt(env, env.policy(hidden=32)).exp()
    assert len(pt) == 29_281 and abs(pt.sum().item() - 1) < 1e-4
    assert env.is_mode(env.all_states()).sum() >= 293                  # ceil(1% of 29,281), plus ties

def test_sample_backward():
    "Backward trajectories from given DAGs end at the empty graph, have |E| + 1 transitions and log p_B = -log |E|!."
    torch.manual_seed(0)
    env = DAGEnv(5)
    x = random_states(env, 50)
    tr = sample_backward(env, UniformBackward(env), x, pf=env.policy(hidden=16))
    n_edges = x[:, 0].flatten(1).sum(1)
    assert torch.equal(tr.lengths, n_edges + 1)
    assert torch.equal(tr.states[:, 0], env.s0(len(x)))
    assert torch.allclose(tr.log_pb, -torch.lgamma(n_edges.float() + 1), atol=1e-4)
    assert torch.isfinite(tr.log_pf).all()

# ------------------------------------------------------------------------------------------- masks and steps
@pytest.mark.parametrize('d', [2, 3, 4, 5, 6])
def test_mask_and_closure_fuzz(d):
    "Mask vs a depth-first cycle check, closure vs recomputation, after forward and after backward steps."
    g = torch.Generator().manual_seed(d)
    env = DAGEnv(d)
    st = random_states(env, 30, g)
    bm = env.backward_mask(st)
    keep = bm.any(1)
    back = env.backward_step(st[keep], torch.multinomial(bm[keep].float(), 1, generator=g)[:, 0])
    for s in (st, back):
        assert torch.equal(s[:, 1], transitive_closure(s[:, 0]))
        mask = env.forward_mask(s)
        assert mask[:, -1].all()
        for a, mk in zip(s[:, 0].tolist(), mask[:, :-1].tolist()):
            ok = [not a[i][j] and i != j and not has_cycle([[v or (u, w) == (i, j) for w, v in enumerate(r)]
                                                             for u, r in enumerate(a)]) for i in range(d) for j in range(d)]
            assert mk == ok

def test_maximal_dags_have_only_stop():
    "A DAG with d(d-1)/2 edges (a total order) admits no more edges: only stop is allowed."
    env = DAGEnv(5)
    full = dag_states(torch.ones(1, 5, 5, dtype=torch.bool).triu(1))
    assert env.forward_mask(full)[0].nonzero().flatten().tolist() == [25]

# ------------------------------------------------------------------------------------------- scores
def log_ml_candidate(X, d, alpha_mu=1., alpha_w=None):
    "log p(D_Y) by Bayes' theorem at the posterior mean (Normal-Wishart likelihood, prior, posterior densities)."
    N, l = X.shape
    alpha_w = d + 2. if alpha_w is None else alpha_w
    t = alpha_mu * (alpha_w - d - 1) / (alpha_mu + 1)
    aw, T = alpha_w - d + l, t * torch.eye(l, dtype=X.dtype)
    xb = X.mean(0)
    R = T + (X - xb).T @ (X - xb) + N * alpha_mu / (N + alpha_mu) * torch.outer(xb, xb)
    mu, W = N * xb / (alpha_mu + N), 0.7 * (aw + N) * torch.linalg.inv(R)          # any point will do
    lik = MVN(mu, precision_matrix=W).log_prob(X).sum()
    prior = (Wishart(torch.tensor(aw, dtype=X.dtype), precision_matrix=T).log_prob(W)
             + MVN(torch.zeros(l, dtype=X.dtype), precision_matrix=alpha_mu * W).log_prob(mu))
    post = (Wishart(torch.tensor(aw + N, dtype=X.dtype), precision_matrix=R).log_prob(W)
            + MVN(mu, precision_matrix=(alpha_mu + N) * W).log_prob(mu))
    return (lik + prior - post).item()

@pytest.mark.parametrize('alpha_mu,alpha_w,shift', [(1., None, 0.), (2., 9., 0.), (1., None, 3.)])
def test_bge_candidate_formula_d5(alpha_mu, alpha_w, shift):
    "Every subset score of d = 5 against Bayes' theorem at a point; `shift` gives the data a non-zero mean."
    x = simulate_data(5, 60, seed=4)[0] + shift
    sub = bge_subset_scores(x, alpha_mu, alpha_w)
    for m in range(1, 32):
        cols = [i for i in range(5) if m >> i & 1]
        assert abs(sub[m].item() - log_ml_candidate(x[:, cols], 5, alpha_mu, alpha_w)) < 1e-7, m

def mec_index(adj):
    d = adj.shape[-1]
    skel = adj | adj.transpose(1, 2)
    v = adj[:, :, None, :] & adj[:, None, :, :] & ~skel[:, :, :, None] & ~torch.eye(d, dtype=torch.bool)[:, :, None]
    return torch.cat([skel.flatten(1), v.flatten(1)], 1).unique(dim=0, return_inverse=True)[1]

def test_score_equivalence_d5():
    "BGe is constant on each of the 8,782 Markov equivalence classes of d = 5 and separates them; lingauss is not."
    env = DAGEnv(5)
    G = env.all_states()
    cls = mec_index(G[:, 0])
    n = int(cls.max()) + 1
    assert n == 8782                                                   # OEIS A007984
    for score, equivalent in (('bge', True), ('lingauss', False)):
        v = DAGEnv(5, score=score).log_marginal_likelihood(G)
        hi = torch.full((n,), -math.inf, dtype=v.dtype).scatter_reduce(0, cls, v, 'amax')
        lo = torch.full((n,), math.inf, dtype=v.dtype).scatter_reduce(0, cls, v, 'amin')
        assert ((hi - lo).max() < 1e-8) == equivalent
    per_class = torch.zeros(n, dtype=torch.float64).scatter_reduce(0, cls, env.log_marginal_likelihood(G), 'amax',
                                                                  include_self=False)
    assert len((per_class * 1e6).round().unique()) == n                # different classes score differently

def test_lingauss_vs_explicit_gaussian_d5():
    x = simulate_data(5, 40, seed=2)[0]
    tab = lingauss_local_scores(x, 0.3, 0.8)
    for j, m in [(0, 0b11110), (4, 0b00011), (2, 0b01001), (1, 0)]:
        X = x[:, [i for i in range(5) if m >> i & 1]]
        cov = 0.3 * torch.eye(40, dtype=torch.float64) + 0.64 * X @ X.T
        assert abs(tab[j, m].item() - MVN(torch.zeros(40, dtype=torch.float64), cov).log_prob(x[:, j]).item()) < 1e-8

def test_reward_is_shifted_log_marginal_likelihood():
    env = DAGEnv(4, score='lingauss')
    G = env.all_states()
    assert torch.allclose(env.log_reward(G).double(), env.log_marginal_likelihood(G) - env.log_ml_empty, atol=1e-4)
    assert torch.allclose(exact_log_pi(env).double(), torch.log_softmax(env.log_marginal_likelihood(G), 0), atol=1e-5)

# ------------------------------------------------------------------------------------------- inputs, trainer contract
def test_user_data_and_bad_inputs():
    x = simulate_data(4, seed=5)[0]
    env = DAGEnv(4, data=x.numpy())                                    # numpy works, as does an int tensor
    assert env.true_adj is None and env.data.dtype == torch.float64
    DAGEnv(3, data=torch.randint(0, 5, (20, 3)))
    for bad, msg in [(np.full((10, 4), np.nan), 'data has non-finite'), (torch.randn(10, 5), 'got (10, 5)'),
                     (torch.randn(0, 4), 'got (0, 4)'), (torch.randn(2, 10, 4), 'got (2, 10, 4)')]:
        with pytest.raises(ValueError, match=msg.replace('(', r'\(').replace(')', r'\)')): DAGEnv(4, data=bad)
    for kw, msg in [(dict(d=0), 'got 0'), (dict(d=2.5), 'got 2.5'), (dict(alpha_mu=-1.), 'alpha_mu'),
                    (dict(prior_scale=math.inf), 'prior_scale'), (dict(d=6, alpha_w=7.), 'alpha_w must be > d \\+ 1 = 7')]:
        with pytest.raises(ValueError, match=msg): DAGEnv(**kw)
    env6 = DAGEnv(6)
    with pytest.raises(NotImplementedError, match='d <= 5'): env6.terminal_states()
    with pytest.raises(NotImplementedError, match='d <= 5'): env6.is_mode(env6.s0(2))
    with pytest.raises(ValueError, match='enumerate_dags needs'): enumerate_dags(0)

def test_trainer_contract():
    "What gfn_nbdev.training.make_task needs: device= and keyword constants with defaults, policy(hidden, n_layers)."
    for d in (2, 4, 6):
        env = DAGEnv(device='cpu', d=d)
        for kind in ('mlp', 'gnn'):
            pf = env.policy(32, 1, kind=kind)
            tr = sample_trajectories(env, pf, 64, epsilon=0.1)
            assert torch.isfinite(tr.log_ratio).all() and tr.log_pf.requires_grad
            tr.log_pf.sum().backward()

def test_presets_through_the_trainer_factory():
    "`make_task` passes `preset`; explicit constants override it; the paper preset's exact p_T at d = 5 sums to one."
    from gfn_nbdev.training import make_task
    ours, paper = make_task('dags'), make_task('dags', preset='paper')
    assert (ours.preset, ours.d, len(ours.data), ours.score) == ('ours', 4, 100, 'bge')
    assert (paper.d, len(paper.data), paper.score) == (5, 500, 'lingauss')
    small = make_task('dags', preset='paper', d=3, n_samples=50)
    assert (small.d, len(small.data), small.score) == (3, 50, 'lingauss')
    torch.manual_seed(0)
    pf = paper.policy(hidden=32)
    with torch.no_grad(): lp = exact_log_pt(paper, pf)
    assert len(lp) == 29_281 and abs(lp.double().exp().sum().item() - 1) < 1e-4
    with pytest.raises(ValueError, match="preset must be one of"): make_task('dags', preset='d5')
