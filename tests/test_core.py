"Property and reliability tests of the batched core over random DAGs (seeded loops, no extra dependency)."
import math
import re
import pytest
import torch
from gfn_nbdev.core import *
from gfn_nbdev.exact import *
from gfn_nbdev.tasks.hypergrid import HyperGrid
from conftest import random_dag

@pytest.mark.parametrize('seed', range(5))
def test_dp_matches_enumeration_and_sampling(seed):
    env = random_dag(seed)
    torch.manual_seed(seed)
    pf = TablePolicy(env, torch.randn(env.M, env.n_actions))
    with torch.no_grad():
        log_pt = exact_log_pt(env, pf)
        ts = enumerate_trajectories(env, pf)
        K = len(env.terminal_states())
        pt_enum = torch.zeros(K, dtype=ts.log_pf.dtype).index_add(0, ts.x_index, ts.log_pf.exp())
        assert torch.allclose(log_pt.exp(), pt_enum.to(log_pt), atol=1e-6)
        assert abs(log_pt.exp().sum().item() - 1) < 1e-5
        # uniform p_B(.|x) is normalised over the trajectories into each x
        pb_sum = torch.zeros(K, dtype=ts.log_pb.dtype).index_add(0, ts.x_index, ts.log_pb.exp())
        assert torch.allclose(pb_sum, torch.ones_like(pb_sum), atol=1e-6)
        # sampler: chi-square goodness of fit over terminal objects, level 0.001 (fixed seed)
        n = 50_000
        tr = sample_trajectories(env, pf, n)
        g = state_graph(env)
        idx = state_index(env, g.keys, tr.x)
        pos = {int(t): k for k, t in enumerate(g.terminal)}
        counts = torch.bincount(torch.tensor([pos[int(i)] for i in idx]), minlength=K).to(log_pt)
        e = n * log_pt.exp()
        chi2 = ((counts - e) ** 2 / e)[e > 0].sum().item()
        dof = int((e > 0).sum()) - 1
        # 0.999 quantile of chi2_dof by the Wilson-Hilferty approximation
        q = dof * (1 - 2 / (9 * dof) + 3.09 * math.sqrt(2 / (9 * dof))) ** 3 if dof > 0 else 0
        assert chi2 < q + 1e-9, (chi2, dof, q)

@pytest.mark.parametrize('seed', range(5))
def test_backward_inverts_forward_and_scores_agree(seed):
    env = random_dag(seed)
    torch.manual_seed(seed)
    pf = TablePolicy(env, torch.randn(env.M, env.n_actions))
    with torch.no_grad():
        tr = sample_trajectories(env, pf, 2000)
        for t in range(tr.actions.shape[1]):
            ok = tr.mask[:, t] & (tr.actions[:, t] != env.stop_action)
            if not ok.any(): continue
            s, a = tr.states[ok, t], tr.actions[ok, t]
            nxt = env.step(s, a)
            assert torch.equal(nxt, tr.states[ok, t + 1])
            assert torch.equal(env.backward_step(nxt, env.backward_action(s, a)), s)
            assert torch.equal(env.forward_action(nxt, env.backward_action(s, a)), a)
        # backward sampling from the sampled x, rescored: log p_F via log_pf_of equals the enumeration's
        bt = sample_backward(env, UniformBackward(env), tr.x, pf=pf)
        assert torch.equal(bt.states[:, 0], env.s0(len(bt)))
        assert torch.allclose(bt.log_pf, log_pf_of(env, pf, bt).sum(1))
        assert torch.isfinite(bt.log_pf).all() and (bt.log_pb <= 0).all()

def test_hypergrid_4d_exact_pt_normalised():
    env = HyperGrid(4, 8)
    pf = env.policy(hidden=32)
    with torch.no_grad(): pt = exact_log_pt(env, pf).exp()
    assert pt.shape == (8 ** 4,) and abs(pt.sum().item() - 1) < 1e-4

def test_uniform_backward_normalised_everywhere():
    env = HyperGrid(3, 5)
    s = env.all_states()
    s = s[~env.is_initial(s)]
    d = UniformBackward(env).dist(s)
    assert torch.allclose(d.log_probs.exp().sum(1), torch.ones(len(s)))

def test_errors_name_the_problem():
    env = HyperGrid(2, 4)
    pf = env.policy(hidden=8)
    with pytest.raises(ValueError, match='n must be >= 1, got 0'): sample_trajectories(env, pf, 0)
    with pytest.raises(ValueError, match='environment is on meta'):
        env2 = HyperGrid(2, 4, device='meta'); sample_trajectories(env2, pf, 2)
    with pytest.raises(ValueError, match='non-finite values'):
        check_finite('log_pf', torch.tensor([0., float('nan')]))
    with pytest.raises(ValueError, match=r'x must have shape \(N, 2\)'):
        sample_backward(env, UniformBackward(env), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match='positive values'):
        GraphEnv(2, [(0, 1)], [1], [-1.])

def _small_tasks():
    "One small instance of every task of the library, with its default policy."
    from gfn_nbdev.tasks.sets import SetGeneration
    from gfn_nbdev.tasks.sequences import SequenceDesign
    from gfn_nbdev.tasks.phylo import Phylogenetics
    from gfn_nbdev.tasks.dags import DAGEnv
    from gfn_nbdev.tasks.continuous import CoordinateEnv
    from gfn_nbdev.tasks.diffusion import DiffusionEnv
    envs = [HyperGrid(2, 4), SetGeneration(n_items=6, set_size=3), SequenceDesign(n_tokens=4, length=3),
            Phylogenetics(n=4, length=10), DAGEnv(d=3, n_samples=20), CoordinateEnv('mixture'), DiffusionEnv('mixture', T=4)]
    return [(env, env.policy(hidden=16)) for env in envs]

@pytest.mark.parametrize('column', [True, False])
def test_every_task_sampler_refuses_a_column_log_reward(column):
    "A task whose _log_reward returns (N, 1) (or one value) fails in the sampler, naming the task and the shapes."
    torch.manual_seed(0)
    for env, pf in _small_tasks():
        name, orig = type(env).__name__, env._log_reward
        sample_trajectories(env, pf, 4).log_ratio                        # the task itself is fine
        env._log_reward = (lambda x, f=orig: f(x)[:, None]) if column else (lambda x, f=orig: f(x)[:1])
        got = '(4, 1)' if column else '(1,)'
        with pytest.raises(ValueError, match=rf"{name}\._log_reward must return shape \(4,\) \(one log-reward per object\), got {re.escape(got)}"):
            sample_trajectories(env, pf, 4)

@pytest.mark.parametrize('seed', range(3))
def test_trajectories_check_shapes_names_every_field(seed):
    "Cutting any field of a sampled batch to N-1 rows (or adding a trailing axis) raises, naming that field."
    env = random_dag(seed)
    torch.manual_seed(seed)
    tr = sample_trajectories(env, TablePolicy(env, torch.randn(env.M, env.n_actions)), 6)
    assert tr.check_shapes() is tr and tr.log_ratio.shape == (6,)
    for f in ('states', 'actions', 'log_pf_steps', 'log_pb_steps', 'log_q_steps', 'lengths', 'x', 'log_reward'):
        for bad in (getattr(tr, f)[:-1], getattr(tr, f)[..., None]):
            if f in ('states', 'actions', 'x') and bad.dim() > getattr(tr, f).dim(): continue   # extra state axes are the env's
            t = Trajectories(**{g: getattr(tr, g) for g in ('states', 'actions', 'log_pf_steps', 'log_pb_steps',
                                                              'log_q_steps', 'lengths', 'x', 'log_reward')})
            setattr(t, f, bad)
            with pytest.raises(ValueError, match='inconsistent Trajectories: ') as e: t.log_ratio
            assert f in str(e.value) or (f == 'lengths' and 'log_pf_steps' in str(e.value)), (f, str(e.value))

def _reference_sample(env, pf, n, pb=None, epsilon=0., temperature=1.):
    "The plain sampler: scores log p_F, log p_B and log q inside the loop, step by step (what `sample_trajectories` must equal)."
    pb = env.backward_policy() if pb is None else pb
    cur, active, T = env.s0(n), torch.arange(n), 0
    recs = []
    x, lengths = torch.empty_like(cur), torch.zeros(n, dtype=torch.long)
    explore = epsilon > 0 or temperature != 1
    while len(active):
        m = len(active)
        stop, a = env.is_complete(cur), env.pad_actions(m)
        lpf, lq, lpb = torch.zeros(m), torch.zeros(m), torch.zeros(m)
        dec = (~stop).nonzero()[:, 0]
        if len(dec):
            d = pf.dist(cur[dec]); q = d.explore(epsilon, temperature) if explore else d
            ad = q.sample(); a[dec] = ad
            lpf = lpf.index_put((dec,), d.log_prob(ad)); lq[dec] = q.log_prob(ad).detach()
            if env.stop_action is not None: stop = stop | (a == env.stop_action)
        move, nxt = ~stop, None
        if move.any():
            nxt = env._step(cur[move], a[move])
            lpb = lpb.index_put((move.nonzero()[:, 0],), pb.log_prob(cur[move], a[move], nxt))
        recs.append((active, cur, a, lpf, lpb, lq))
        x[active[stop]], lengths[active[stop]] = cur[stop], T + 1
        active, cur, T = active[move], nxt, T + 1
    states = x[:, None].expand(n, T + 1, *env.state_shape).clone()
    actions = torch.full((n, T, *env.action_shape), -1 if env.action_dtype == torch.long else 0, dtype=env.action_dtype)
    cols = [[], [], []]
    for t, (idx, s, a, *lps) in enumerate(recs):
        states[idx, t], actions[idx, t] = s, a
        for c, v in zip(cols, lps): c.append(torch.zeros(n, dtype=v.dtype).index_put((idx,), v))
    tr = Trajectories(states, actions, *[torch.stack(c, 1) for c in cols], lengths, x, None)
    tr.log_reward = env.log_reward(x)
    return tr

@pytest.mark.parametrize('kw', [{}, dict(epsilon=0.3), dict(temperature=2.)])
def test_sampler_equals_scoring_as_it_goes(kw):
    """Drawing first and scoring in one batched call changes nothing: same trajectories for the same seed, the generator
    left in the same state, the same log-probabilities (float tolerance: one batched matmul vs per-step ones) and the
    same gradient of log p_F. Every task of the library, on-policy, ε-uniform and tempered."""
    fields = ('states', 'actions', 'lengths', 'x', 'log_reward', 'log_pf_steps', 'log_pb_steps', 'log_q_steps')
    for env, pf in _small_tasks():
        name = type(env).__name__
        if 'epsilon' in kw and env.action_dtype != torch.long: continue  # no ε-uniform on R^d
        for seed in range(2):
            torch.manual_seed(seed); ref = _reference_sample(env, pf, 24, **kw); g_ref = torch.get_rng_state()
            torch.manual_seed(seed); tr = sample_trajectories(env, pf, 24, **kw); g = torch.get_rng_state()
            assert torch.equal(g, g_ref), f"{name}: the random stream advanced differently"
            for f in fields:
                u, v = getattr(ref, f), getattr(tr, f)
                assert u.shape == v.shape and u.dtype == v.dtype, (name, f, u.shape, v.shape)
                if f.startswith('log_'): assert torch.allclose(u, v, atol=1e-5), (name, f, (u - v).abs().max())
                else: assert torch.equal(u, v), (name, f)
            ps = [p for p in pf.parameters() if p.requires_grad]
            for a, b in zip(torch.autograd.grad(ref.log_pf.sum(), ps, allow_unused=True),
                            torch.autograd.grad(tr.log_pf.sum(), ps, allow_unused=True)):
                assert (a is None) == (b is None) and (a is None or torch.allclose(a, b, atol=1e-4, rtol=1e-4)), name

def test_one_differentiable_policy_call_per_batch():
    "The sampler calls the policy once with the gradient, on every decision of the batch; the loop runs without it."
    torch.manual_seed(0)
    for env, pf in _small_tasks():
        calls, dist = [], pf.dist
        pf.dist = lambda s, dist=dist: calls.append((torch.is_grad_enabled(), len(s))) or dist(s)
        try: tr = sample_trajectories(env, pf, 16)
        finally: del pf.dist
        forced = env.is_complete(tr.states.flatten(0, 1)).reshape(tr.states.shape[:2])[:, :-1] & tr.mask
        assert [n for g, n in calls if g] == [int(tr.mask.sum() - forced.sum())], (type(env).__name__, calls)
        assert tr.log_pf.requires_grad

def test_random_layers_are_refused():
    "Dropout or batch norm in training mode would score the draws under another distribution: a clear ValueError."
    env = HyperGrid(2, 4)
    for layer in (torch.nn.Dropout(0.2), torch.nn.BatchNorm1d(3)):
        pf = DiscretePolicy(env, torch.nn.Sequential(MLP(8, 3, hidden=8), layer))
        with pytest.raises(ValueError, match=rf"DiscretePolicy has {type(layer).__name__} \(net\.1\) in training mode"):
            sample_trajectories(env, pf, 4)
        assert len(sample_trajectories(env, pf.eval(), 4)) == 4
    pf = DiscretePolicy(env, torch.nn.Sequential(MLP(8, 3, hidden=8), torch.nn.Dropout(0.)))   # p = 0: the identity
    assert len(sample_trajectories(env, pf, 4)) == 4

def test_hypergrid_sampling_reads_the_device_back_about_twice_per_step():
    "Sampling on the hypergrid reads the device back about twice per step (the masks' check and the compaction of finished rows), plus a few times to join the batch: its one-hot encodings and moves read nothing (F.one_hot reads its input's range, twice per call)."
    from gfn_nbdev.testing import HostSyncs
    env = HyperGrid(4, 8)
    torch.manual_seed(0)
    pf = env.policy(hidden=64)
    with HostSyncs() as c: b = sample_trajectories(env, pf, 64)
    T = b.actions.shape[1]                                                # the longest trajectory's steps
    assert c.total <= 2 * (T + 1) + 8, (T, dict(c.syncs))
