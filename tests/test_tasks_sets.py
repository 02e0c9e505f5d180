"Heavier checks of the set task: exact mode thresholds, the optimal policy, reward classes and sampling at larger sizes."
import itertools, math
import pytest
import torch
from gfn_nbdev.core import *
from gfn_nbdev.evaluation import chi2_quantile
from gfn_nbdev.exact import *
from gfn_nbdev.tasks.sets import *

torch.set_num_threads(1)

def brute_sums(f, k):
    "Sums of every k-subset of the list f, by itertools (the independent reference)."
    return torch.tensor([sum(c) for c in itertools.combinations(f, k)], dtype=torch.float64)

@pytest.mark.parametrize('n_levels', [None, 3, 5])
def test_subset_sums_match_brute_force(n_levels):
    env = SetGeneration(16, 8, seed=3, n_levels=n_levels)
    f = env.utilities.tolist()
    ref = brute_sums(f, 8).sort(descending=True).values                   # 12,870 sums
    ss = SubsetSums(env.utilities, 8)
    for t in [-9., -1.3, 0., 0.7, 2.5, float(ref[0]) + 1e-9, float(ref[-1]) - 1e-9]:
        assert ss.count(t) == int((ref >= t - 1e-12).sum()), t
    for K in [1, 2, 129, 1000, 12_870]:
        assert abs(ss.kth_largest(K) - float(ref[K - 1])) < 1e-12
    assert abs(env.mode_threshold() - float(ref[math.ceil(0.01 * 12_870) - 1])) < 1e-12

def test_quantised_threshold_at_paper_size_matches_classes():
    "Two exact routes to the top-1% threshold at |U|=32, |S|=16: meet in the middle and the class counts."
    env = SetGeneration(n_levels=3)
    c = env.reward_classes().double()
    m = env.level_counts.double()
    n_sets = (torch.lgamma(m + 1) - torch.lgamma(c + 1) - torch.lgamma(m - c + 1)).sum(1).exp().round()
    assert int(n_sets.sum()) == math.comb(32, 16)
    lr, order = env.class_log_reward().sort(descending=True)
    K = math.ceil(0.01 * math.comb(32, 16))
    kth = float(lr[(n_sets[order].cumsum(0) >= K).nonzero()[0, 0]])
    assert abs(env.mode_threshold() - kth) < 1e-9
    # number of sets that are modes (ties included) is >= K, and the classes above the threshold hold fewer than K
    assert int(n_sets[env.class_log_reward() >= kth - 1e-9].sum()) >= K > int(n_sets[env.class_log_reward() > kth + 1e-9].sum())

def test_mode_threshold_normal_fallback_above_40_items():
    env = SetGeneration(50, 25, seed=1)
    x = torch.zeros(100_000, 50, dtype=torch.long).scatter(1, torch.rand(100_000, 50).argsort(1)[:, :25], 1)
    frac = env.is_mode(x).double().mean().item()
    assert abs(frac - 0.01) < 0.003, frac                                 # a normal approximation: loose on purpose

def test_log_partition_matches_enumeration():
    for U, S, seed in [(12, 6, 0), (14, 3, 1), (10, 10, 2), (9, 1, 3)]:
        env = SetGeneration(U, S, seed=seed)
        ref = torch.logsumexp(env.terminal_states().double() @ env.utilities, 0).item()
        assert abs(set_log_partition(env) - ref) < 1e-9

def test_optimal_policy_is_exact_on_a_medium_universe():
    torch.set_default_dtype(torch.float64)
    try:
        env = SetGeneration(16, 8, seed=5)
        with torch.no_grad():
            err = (exact_log_pt(env, OptimalSetPolicy(env)) - exact_log_pi(env)).abs().max().item()
        assert err < 1e-10, err
    finally:
        torch.set_default_dtype(torch.float32)

def test_exact_pt_of_a_skewed_policy_matches_sampling_with_binning():
    "The optimal policy is far from uniform (some sets have expected count < 5): bin the rare ones together."
    env = SetGeneration(12, 6, seed=0)
    pf = OptimalSetPolicy(env)
    torch.manual_seed(0)
    with torch.no_grad():
        pt = exact_log_pt(env, pf).double().exp()
        x = sample_trajectories(env, pf, 100_000).x
    keys = env.state_key(env.terminal_states())
    counts = torch.bincount(torch.searchsorted(keys, env.state_key(x)), minlength=len(keys)).double()
    exp = 1e5 * pt
    bins, cur, acc = torch.empty(len(exp), dtype=torch.long), 0, 0.
    for i in exp.argsort().tolist():                                      # greedy: pool the rarest sets until >= 5
        bins[i] = cur; acc += float(exp[i])
        if acc >= 5: cur, acc = cur + 1, 0.
    bins = bins.clamp(max=cur - 1)                                        # a short last run joins the previous bin
    e = torch.zeros(cur, dtype=torch.float64).index_add(0, bins, exp)
    o = torch.zeros_like(e).index_add(0, bins, counts)
    assert (e >= 5).all() and (exp < 5).any() and cur < len(exp)         # the binning is needed, and it works
    stat = ((o - e) ** 2 / e).sum().item()
    assert stat < chi2_quantile(len(e) - 1), (stat, len(e))

def test_mdp_inverses_at_paper_size():
    env = SetGeneration()
    torch.manual_seed(1)
    k = torch.randint(0, 16, (2000,))
    s = (torch.rand(2000, 32).argsort(1) < k[:, None]).long()            # random sets of size k < 16
    a = MaskedCategorical(torch.zeros(2000, 33), env.forward_mask(s)).sample()
    s2 = env.step(s, a)
    assert torch.equal(env.backward_step(s2, env.backward_action(s, a)), s)
    b = UniformBackward(env).dist(s2).sample()
    assert torch.equal(env.step(env.backward_step(s2, b), env.forward_action(s2, b)), s2)
    assert torch.allclose(UniformBackward(env).log_prob(s, a, s2), -(k + 1).float().log())
    assert (env.state_key(s2) == (s2 * (2 ** torch.arange(32))).sum(1)).all()

def test_exact_pt_is_differentiable():
    env = SetGeneration(8, 4)
    torch.manual_seed(0)
    pf = env.policy(hidden=16)
    loss = (exact_log_pt(env, pf).exp() - exact_log_pi(env).exp()).abs().sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in pf.parameters())

def test_class_index_and_sampled_class_l1_at_paper_size():
    env = SetGeneration(n_levels=3, seed=2)
    torch.manual_seed(0)
    x = (torch.rand(500, 32).argsort(1) < 16).long()
    c = env.reward_classes()[env.class_index(x)]                          # (500, k)
    direct = torch.stack([(x * (env.item_level == j)).sum(1) for j in range(len(env.levels))], 1)
    assert torch.equal(c, direct)
    assert torch.allclose(env.class_log_reward()[env.class_index(x)], x.double() @ env.utilities)
    r = sampled_class_l1(env, env.policy(hidden=32), n=20_000)
    assert r['l1'] > r['floor'] + 10 * r['floor_sd'] and r['p_value'] < 0.01

def test_optimal_policy_reaches_the_noise_floor_at_paper_size():
    "About 10 s: the closed-form optimal policy at |U| = 32 has class L1 within the noise of a perfect sampler."
    env = SetGeneration(n_levels=3)
    torch.manual_seed(0)
    r = sampled_class_l1(env, OptimalSetPolicy(env), n=20_000)
    assert abs(r['l1'] - r['floor']) < 4 * r['floor_sd'], r

def test_constructor_for_the_trainer():
    env = SetGeneration(device='cpu', n_items=12, set_size=6, seed=4)
    pf = env.policy(64, 3)
    tr = sample_trajectories(env, pf, 8)
    assert tr.x.shape == (8, 12) and (tr.x.sum(1) == 6).all() and torch.isfinite(tr.log_reward).all()

def test_presets_through_the_trainer_factory():
    "`make_task` passes `preset`: 'paper' adds the unbiased L1 to `metrics`, 'ours' reports nothing extra."
    from gfn_nbdev.training import make_task
    ours = make_task('sets')
    paper = make_task('sets', preset='paper', n_items=12, set_size=6)
    assert (ours.preset, ours.l1_sets, ours.n_items, ours.set_size) == ('ours', 0, 32, 16)
    assert make_task('sets', preset='paper').l1_sets > 0
    torch.manual_seed(0)
    pf = paper.policy(hidden=16)
    m = paper.metrics(pf)
    assert set(m) == {'l1_mc', 'l1_mc_se'} and 0 < m['l1_mc'] < 2 and m['l1_mc_se'] > 0
    assert ours.metrics(pf) == {}
    with pytest.raises(ValueError, match="preset must be one of"): make_task('sets', preset='Table1')

def test_mc_set_l1_is_unbiased_over_seeds():
    "Mean of 40 independent estimates (n = 50 each) within 4 standard errors of the exact L1, small universe."
    env = SetGeneration(10, 4, seed=3)
    torch.manual_seed(1)
    pf = env.policy(hidden=16)
    with torch.no_grad():
        exact = (exact_log_pt(env, pf).double().exp() - exact_log_pi(env).double().exp()).abs().sum().item()
    est = torch.tensor([mc_set_l1(env, pf, n=50, seed=s)['l1'] for s in range(40)])
    assert abs(est.mean().item() - exact) < 4 * est.std().item() / math.sqrt(40), (est.mean().item(), exact)

def test_set_log_pt_matches_brute_force_over_orders():
    "p_T of a set is the sum over its |S|! orders of the product of p_F along each: brute force on |S| = 4."
    env = SetGeneration(9, 4, seed=1)
    torch.manual_seed(2)
    pf = env.policy(hidden=16)
    x = sample_pi_sets(env, 3, seed=5)
    total = []
    with torch.no_grad():
        for row in x:
            items, tot = row.nonzero()[:, 0].tolist(), 0.
            for order in itertools.permutations(items):
                s, lp = env.s0(1), 0.
                for u in order:
                    lp += pf.dist(s).log_probs[0, u].item(); s = env.step(s, torch.tensor([u]))
                tot += math.exp(lp)
            total.append(math.log(tot))
    assert torch.allclose(set_log_pt(env, pf, x), torch.tensor(total, dtype=torch.float64), atol=1e-5)
