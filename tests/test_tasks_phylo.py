"Heavier checks of the phylogenetics task: exact p_T against sampling and enumeration at n = 7, the reward against an independent pruning, keys and steps at n = 2..9."
import math
import pytest
import torch
import torch.nn.functional as F
from gfn_nbdev.core import *
from gfn_nbdev.exact import *
from gfn_nbdev.evaluation import chi2_quantile, empirical_dist, exact_metrics
from gfn_nbdev.tasks.phylo import *
from gfn_nbdev.tasks.phylo import _PART
from conftest import slow

torch.set_num_threads(1)

def binned_chi2(p, counts, min_expected=5.):
    "Chi-square over bins of consecutive objects (sorted by p) holding expected count >= `min_expected`, and its df."
    e, order = (p * counts.sum()).sort()
    bins, acc, b = [], 0., 0                                              # greedy; depends on p only, not on counts
    for v in e.tolist():
        bins.append(b); acc += v
        if acc >= min_expected: b, acc = b + 1, 0.
    bins = torch.tensor(bins).clamp(max=b - 1 if acc > 0 and b > 0 else b)   # a short last bin joins the previous
    E = torch.zeros(int(bins.max()) + 1, dtype=e.dtype).index_add(0, bins, e)
    C = torch.zeros_like(E).index_add(0, bins, counts[order].to(E))
    assert (E >= min_expected).all()
    return ((C - E) ** 2 / E).sum().item(), len(E) - 1

def random_states(env, pf, n_traj, seed=0):
    "Every state visited by `n_traj` trajectories of `pf`: forests of every size."
    torch.manual_seed(seed)
    with torch.no_grad(): return sample_trajectories(env, pf, n_traj).states.flatten(0, 1)

@pytest.mark.parametrize('n_samples', [20_000, pytest.param(100_000, marks=slow)])
def test_exact_pt_matches_samples_at_n7(n_samples):
    """10,395 trees under the untrained GIN; trees sorted by p_T and grouped into bins of expected count >= 5
    (~2 expected per tree at 2e4 samples, ~10 at 1e5); chi-square at level 0.001. ~11 s / ~55 s on one thread."""
    env = Phylogenetics()
    torch.manual_seed(0)
    pf = env.policy()
    with torch.no_grad():                                                 # chunks: a state is 7 x 105 floats
        pt = exact_log_pt(env, pf).exp().double()
        x = torch.cat([sample_trajectories(env, pf, 10_000).x for _ in range(n_samples // 10_000)])
    assert abs(pt.sum().item() - 1) < 1e-4
    chi2, df = binned_chi2(pt, empirical_dist(env, x) * n_samples)
    assert df > 1000                                                      # a fine partition of the 10,395 trees
    assert chi2 < chi2_quantile(df), (chi2, df, chi2_quantile(df))

def test_dp_equals_enumeration_at_n7():
    "All 56,700 trajectories of the n = 7 DAG: sum of p_F per tree = the DP's p_T; sum of p_B(τ|x) = 1 per tree."
    torch.set_default_dtype(torch.float64)
    try:
        env = Phylogenetics()
        torch.manual_seed(1)
        pf = env.policy(hidden=16)
        with torch.no_grad():
            ts = enumerate_trajectories(env, pf)
            pt = exact_log_pt(env, pf).exp()
        K = len(env.terminal_states())
        assert len(ts) == math.prod(math.comb(k, 2) for k in range(2, 8)) == 56_700
        assert torch.allclose(torch.zeros(K).index_add(0, ts.x_index, ts.log_pb.exp()), torch.ones(K), atol=1e-12)
        assert torch.allclose(torch.zeros(K).index_add(0, ts.x_index, ts.log_pf.exp()), pt, atol=1e-12)
        # trajectories to a tree = its merge orders = (n-1)! / prod over internal nodes v of (internal nodes below v),
        # and a node with clade size c has c - 1 internal nodes at or below it
        x = env.terminal_states()
        c = env.node_masks(x)[:, env.n:]                                  # (K, n-1) internal clades
        size = ((c[..., None] >> torch.arange(7)) & 1).sum(-1).double()
        orders = math.factorial(6) / (size - 1).prod(1)
        assert torch.equal(torch.bincount(ts.x_index, minlength=K).double(), orders)
        cat = env.state_key(env.tree_state(((((((0, 1), 2), 3), 4), 5), 6)))
        assert int((env.state_key(ts.x) == cat).sum()) == 1
    finally:
        torch.set_default_dtype(torch.float32)

def felsenstein_reference(seqs, tree, t):
    "Plain recursive pruning in float64 with matrix_exp — independent of the package's log-space cache."
    P = torch.linalg.matrix_exp(jc69_rate_matrix() * t)
    def lik(node):                                                        # (L, 4): p(data below | base at node)
        if isinstance(node, int):
            s = seqs[node]
            return torch.stack([torch.ones(4, dtype=torch.float64) if c in '-N?' else
                                F.one_hot(torch.tensor('ACGT'.index(c)), 4).double() for c in s])
        a, b = lik(node[0]), lik(node[1])
        return (a @ P.T) * (b @ P.T)
    return (lik(tree) @ torch.full((4,), 0.25, dtype=torch.float64)).log().sum().item()

@pytest.mark.parametrize('n,seed', [(5, 0), (7, 1), (9, 2)])
def test_likelihood_against_reference(n, seed):
    seqs = simulate_alignment(n=n, length=40, seed=seed)
    seqs = [s[:5] + '-N?' + s[8:] if i == 1 else s for i, s in enumerate(seqs)]   # some missing data
    for bl in (0.05, 0.1, 0.7):
        env = Phylogenetics(seqs, branch_length=bl)
        g = torch.Generator().manual_seed(seed)
        for _ in range(5):
            tree = random_tree(n, g)
            got = env.log_likelihood(env.tree_state(tree)).item()
            ref = felsenstein_reference(seqs, tree, bl)
            assert abs(got - ref) < 1e-5 * abs(ref), (tree, got, ref)

def test_cache_equals_recomputation_on_all_trees():
    "The cached root partial of each of the 10,395 trees equals the from-structure recomputation."
    env = Phylogenetics()
    x = env.terminal_states()
    P = env.node_log_partials(x)                                           # (K, 13, L, 4)
    assert torch.allclose(P[torch.arange(len(x)), x[:, 0, 0].long()].flatten(1),
                          x[:, 0, _PART:], atol=1e-4)

@pytest.mark.parametrize('n', [2, 3, 6, 8, 9])
def test_steps_and_keys_at_every_size(n):
    "backward∘forward and forward∘backward are identities; keys are equal exactly when the structures are."
    env = Phylogenetics(n=n, length=10)
    pf = env.policy(hidden=16)
    st = random_states(env, pf, 100)
    keys = env.state_key(st)
    struct = st[..., :_PART].flatten(1)
    _, inv = torch.unique(struct, dim=0, return_inverse=True)
    same_key = keys[:, None] == keys[None]
    same_struct = inv[:, None] == inv[None]
    assert torch.equal(same_key, same_struct)
    assert (keys >= 0).all()
    nz = st[~env.is_initial(st)]
    b = UniformBackward(env).dist(nz).sample()
    back = env.step(env.backward_step(nz, b), env.forward_action(nz, b))
    assert torch.equal(back[..., :_PART], nz[..., :_PART]) and torch.allclose(back, nz, atol=1e-5)
    live = st[~env.is_complete(st)]
    with torch.no_grad(): a = pf.dist(live).sample()
    fwd = env.backward_step(env.step(live, a), env.backward_action(live, a))
    assert torch.equal(fwd[..., :_PART], live[..., :_PART]) and torch.allclose(fwd, live, atol=1e-5)
    # the cache of every root equals the recomputation from the structure
    P = env.node_log_partials(st).flatten(2)
    r = st[:, :, 0].long()
    ok = r >= 0
    rows = torch.arange(len(st))[:, None].expand_as(r)
    assert torch.allclose(P[rows[ok], r[ok]], st[ok][:, _PART:], atol=1e-4)

def test_n9_keys_fit_int64_and_modes():
    env = Phylogenetics(n=9)
    # the largest key: every digit n-1 over 2n-1 digits
    assert 9 ** 17 < 2 ** 63
    x = random_states(env, env.policy(hidden=16), 64)
    x = x[env.is_complete(x)]
    assert env.is_mode(x).dtype == torch.bool
    thr = env.mode_threshold()
    assert math.isfinite(thr)
    with pytest.raises(NotImplementedError, match='limited to n <= 7'): env.terminal_states()

def test_float64_dp_matches_float32():
    torch.manual_seed(0)
    env32 = Phylogenetics(n=5); pf32 = env32.policy()
    with torch.no_grad(): b = exact_log_pt(env32, pf32).double()
    lr32 = env32.log_reward(env32.terminal_states()).double()
    torch.set_default_dtype(torch.float64)
    try:
        env64 = Phylogenetics(n=5); pf64 = env64.policy(); pf64.load_state_dict(pf32.state_dict())
        with torch.no_grad(): a = exact_log_pt(env64, pf64)
        assert a.dtype == torch.float64 and env64.terminal_states().dtype == torch.float64
        assert torch.allclose(a, b, atol=1e-4)
        assert torch.allclose(env64.log_reward(env64.terminal_states()), lr32, atol=1e-3)
    finally:
        torch.set_default_dtype(torch.float32)

def test_temperature_and_pi():
    env, hot = Phylogenetics(n=5), Phylogenetics(n=5, temperature=3.)
    x = env.terminal_states()
    assert torch.allclose(hot.log_reward(x), env.log_reward(x) / 3)
    lp, lh = exact_log_pi(env).double(), exact_log_pi(hot).double()
    H = lambda l: -(l.exp() * l).sum()
    assert H(lh) > H(lp)                                                   # tempering flattens π

def test_fasta_roundtrip_and_names():
    seqs = simulate_alignment(n=4, length=12, seed=5)
    text = ''.join(f">taxon {i}\n{s[:6]}\n{s[6:].lower()}\n" for i, s in enumerate(seqs))
    env = Phylogenetics(text)
    assert env.sequences == seqs and env.names == [f"taxon {i}" for i in range(4)]
    assert env.newick(env.tree_state(((0, 1), (2, 3)))) == ['((taxon 0,taxon 1),(taxon 2,taxon 3));']

@slow
def test_tb_with_exploration_learns_n7():
    "Off-policy TB (ε = 0.1) at the paper's size reaches a small L1 within 1,200 steps of batch 64 (~4 min on CPU)."
    torch.manual_seed(0)
    env = Phylogenetics(); pf = env.policy()
    with torch.no_grad(): logZ = torch.nn.Parameter(sample_trajectories(env, pf, 64).log_reward.mean())
    opt = torch.optim.Adam([dict(params=pf.parameters(), lr=1e-3), dict(params=[logZ], lr=0.1)])
    for _ in range(1200):
        tr = sample_trajectories(env, pf, 64, epsilon=0.1)
        loss = ((logZ + tr.log_ratio) ** 2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    assert exact_metrics(env, pf)['l1'] < 0.5

def test_presets_through_the_trainer_factory():
    "`make_task` passes `preset`; the paper preset keeps the data of its seed and only tempers the reward."
    from gfn_nbdev.training import make_task
    ours, paper = make_task('phylo'), make_task('phylo', preset='paper', seed=3)
    assert (ours.preset, ours.branch_length, ours.temperature) == ('ours', 0.1, 1.0)
    assert (paper.branch_length, paper.temperature, paper.n, paper.length) == (0.3, 2.5, 7, 25)
    assert paper.sequences == simulate_alignment(seed=3)
    x = paper.tree_state(((0, 1), ((2, 3), (4, (5, 6)))))
    ref = Phylogenetics(seed=3, branch_length=0.3)
    assert torch.allclose(paper.log_reward(x), ref.log_likelihood(ref.tree_state(((0, 1), ((2, 3), (4, (5, 6)))))) / 2.5)
    with pytest.raises(ValueError, match="preset must be one of"): make_task('phylo', preset='PhyloGFN')
