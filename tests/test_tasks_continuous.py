"Statistical and reliability tests of the continuous tasks in R² (the coordinate construction and the diffusion extension)."
import math
import pytest
import torch
from gfn_nbdev.core import *
from gfn_nbdev.tasks.continuous import *
from gfn_nbdev.tasks.diffusion import *
from gfn_nbdev.training import TrainConfig, Trainer
from conftest import slow

KS_001 = 1.95   # asymptotic 0.001 critical value of sqrt(n) * D_n (one-sample Kolmogorov-Smirnov)


def zero_drift(pf, log_var_factor: float = 0.):
    "Drift 0 and a constant log-variance factor `log_var_factor` (must be within ±3)."
    with torch.no_grad():
        pf.net[-1].weight.zero_(); pf.net[-1].bias.zero_()
        if log_var_factor: pf.net[-1].bias[2:] = 3 * math.atanh(log_var_factor / 3)
    return pf


# ---------------------------------------------------------------- the coordinate construction

@pytest.mark.parametrize('seed,target', [(0, 'mixture'), (1, 'banana'), (2, 'wide_mixture')])
def test_step_densities_integrate_to_one_and_match_their_samplers(seed, target):
    "Each step's 1-D mixture (at random reachable states) integrates to 1 and its draws pass a KS test at level 0.001."
    torch.manual_seed(seed)
    env = CoordinateEnv(target)
    pf = env.policy(n_components=4)
    with torch.no_grad():
        states = torch.cat([env.s0(2), sample_trajectories(env, pf, 2).states[:, 1]])   # two at t = 0, two at t = 1
        d = pf.dist(states)
        for r in range(len(states)):
            row = lambda m: GaussianMixture1D(d.log_w[r].expand(m, -1), d.means[r].expand(m, -1), d.log_scales[r].expand(m, -1))
            s = d.log_scales[r].exp().max()
            a = torch.linspace(d.means[r].min() - 12 * s, d.means[r].max() + 12 * s, 40_001, dtype=torch.float64)
            dens = row(len(a)).log_prob(a[:, None].float()).double().exp()
            assert abs(torch.trapezoid(dens, a).item() - 1) < 1e-5
            n = 20_000
            x = row(n).sample().sort(0).values
            F = row(n).cdf(x).double()
            i = torch.arange(1, n + 1, dtype=torch.float64)
            assert torch.maximum(i / n - F, F - (i - 1) / n).max().item() < KS_001 / math.sqrt(n)


@pytest.mark.parametrize('target', ['mixture', 'banana', 'wide_mixture'])
def test_target_samplers_match_densities(target):
    "Chi-square of 4·10^5 draws on a 32² grid over the box (expected counts >= 5, the rest pooled), level 0.001."
    torch.manual_seed(10)
    tgt = make_target(target)
    stat, q = histogram_chi2(tgt.sample(400_000), tgt.log_prob, Grid(tgt.bounds, 32))
    assert stat < q, (stat, q)


@pytest.mark.parametrize('target', ['mixture', 'banana', 'wide_mixture'])
def test_target_box_mass(target):
    "The box holds all but < 1e-6 of the mass (midpoint rule on 1024², in float64)."
    tgt = make_target(target)
    g = Grid(tgt.bounds, 1024)
    assert abs(grid_mass(tgt.log_prob(g.points(dtype=torch.float64)), g) - 1) < 1e-6


def test_banana_box_mass_by_quadrature():
    "Exact box mass of the banana: ∫ φ(z1) P(z2 ∈ [lo, hi] + z1² + 1 | z1) dz1 ≥ 1 - 1e-6 (the union bound says ≥ 1 - 7.6e-8)."
    b = Banana()
    (a0, a1), (lo, hi) = b.bounds
    z = torch.linspace(a0, a1, 200_001, dtype=torch.float64)
    s = math.sqrt(1 - b.rho ** 2)
    cond = torch.special.ndtr((hi + z ** 2 + 1 - b.rho * z) / s) - torch.special.ndtr((lo + z ** 2 + 1 - b.rho * z) / s)
    mass = torch.trapezoid(torch.exp(-z ** 2 / 2) / math.sqrt(2 * math.pi) * cond, z).item()
    assert mass > 1 - 1e-6 and mass < 1 + 1e-9


@pytest.mark.parametrize('seed', range(4))
def test_exact_pt_integrates_to_one(seed):
    "Exact p_T of random policies integrates to 1 within 1e-3 over ±12 target scales (600² midpoint rule)."
    torch.manual_seed(seed)
    env = CoordinateEnv(['mixture', 'banana'][seed % 2])
    pf = env.policy(n_components=1 + seed)
    box = tuple((l - 12 * s, l + 12 * s) for l, s in zip(env.target.loc, env.target.scale))
    g = Grid(box, 600)
    with torch.no_grad(): lp = env.log_pt(pf, g.points())
    assert abs(grid_mass(lp, g) - 1) < 1e-3


@pytest.mark.parametrize('seed', range(3))
def test_sampler_matches_exact_pt(seed):
    "Terminal samples of a random policy against its exact p_T: chi-square on 24² cells, level 0.001."
    torch.manual_seed(seed)
    env = CoordinateEnv('mixture')
    pf = env.policy()
    box = tuple((l - 6 * s, l + 6 * s) for l, s in zip(env.target.loc, env.target.scale))
    with torch.no_grad():
        x = sample_trajectories(env, pf, 200_000).x[:, :2]
        stat, q = histogram_chi2(x, lambda p: env.log_pt(pf, p), Grid(box, 24))
    assert stat < q, (stat, q)


def test_importance_estimate_is_exact_and_chunk_invariant_for_coordinates():
    torch.manual_seed(0)
    env = CoordinateEnv('banana'); pf = env.policy()
    pts = env.grid(32).points()
    xs = torch.cat([pts, torch.full((len(pts), 1), 2.)], 1)
    a = importance_log_pt(env, pf, env.backward_policy(), xs, K=1, chunk=100)
    b = importance_log_pt(env, pf, env.backward_policy(), xs, K=3, chunk=1 << 16)
    with torch.no_grad(): exact = env.log_pt(pf, pts)
    torch.testing.assert_close(a, exact, atol=1e-4, rtol=0)
    torch.testing.assert_close(b, exact, atol=1e-4, rtol=0)


# ---------------------------------------------------------------- the diffusion extension

@pytest.mark.parametrize('T,sigma', [(1, 1.), (3, 0.5), (10, 1.5), (20, 5.)])
def test_zero_drift_forward_and_backward_measures_coincide(T, sigma):
    "ℓ + log Z = 0 on every trajectory when the target is the forward marginal N(0, σ² I)."
    torch.manual_seed(T)
    marginal = GaussianMixture([[0., 0.]], sigma ** 2)
    env = DiffusionEnv(marginal, T=T, sigma=sigma)
    pf = zero_drift(env.policy())
    with torch.no_grad(): tr = sample_trajectories(env, pf, 2000, pb=env.backward_policy())
    assert tr.log_ratio.abs().max().item() < 1e-4 * max(1, T / 5)
    with torch.no_grad(): bk = sample_backward(env, env.backward_policy(), tr.x[:200], pf)
    assert bk.log_ratio.abs().max().item() < 1e-4 * max(1, T / 5)


def test_zero_drift_importance_estimate_is_closed_form():
    "p̂_T with K = 4 equals N(x | 0, σ² I) up to float error (the ratio is the same for every path)."
    torch.manual_seed(0)
    env = DiffusionEnv('mixture', T=10, sigma=1.5)
    pf = zero_drift(env.policy())
    pts = Grid(((-4., 4.), (-4., 4.)), 24).points()
    exact = GaussianMixture([[0., 0.]], 1.5 ** 2).log_prob(pts)
    torch.testing.assert_close(env.log_pt(pf, pts, K=4), exact, atol=2e-4, rtol=0)


def test_importance_estimate_is_unbiased_with_a_variance_mismatch():
    """Forward: driftless with variance factor v = e^0.2, so p_T = N(0, v σ² I) but p_F ≠ p_B(·|x) p_T: the weights vary.
    The estimate of p_T(x) / N(x | 0, v σ² I) averaged over 256 points × K = 64 paths is 1 within 4 standard errors."""
    torch.manual_seed(0)
    sigma, c = 1., 0.2
    env = DiffusionEnv('mixture', T=5, sigma=sigma)
    pf = zero_drift(env.policy(), log_var_factor=c)
    pts = GaussianMixture([[0., 0.]], math.exp(c) * sigma ** 2).sample(256)
    exact = GaussianMixture([[0., 0.]], math.exp(c) * sigma ** 2).log_prob(pts)
    xs = torch.cat([pts, torch.full((256, 1), 5.)], 1).repeat(64, 1)          # 64 single-path estimates per point
    r = (importance_log_pt(env, pf, env.backward_policy(), xs, K=1) - exact.repeat(64)).double().exp()
    assert r.std() > 0.05                                                     # the weights really vary
    assert abs(r.mean().item() - 1) < 4 * r.std().item() / math.sqrt(len(r)), (r.mean(), r.std())


def test_bridge_kernel_moments():
    "Backward samples from x_T = x: x_t has mean x t/T and variance σ² Δt t (T - t)/T per coordinate (the bridge's law)."
    torch.manual_seed(0)
    env = DiffusionEnv('mixture', T=8, sigma=2.)
    x = torch.tensor([[1.5, -0.5, 8.]]).repeat(100_000, 1)
    with torch.no_grad(): bk = sample_backward(env, env.backward_policy(), x)
    for t in (1, 4, 7):
        xt = bk.states[:, t, :2]
        var = 4 * (1 / 8) * t * (8 - t) / 8
        torch.testing.assert_close(xt.mean(0), x[0, :2] * t / 8, atol=4 * math.sqrt(var / 1e5), rtol=0)
        torch.testing.assert_close(xt.var(0), torch.full((2,), var), atol=4 * var * math.sqrt(2 / 1e5), rtol=0)
    assert (bk.states[:, 0, :2] == 0).all()


def test_cross_check_with_hvi_path_densities():
    "The env's per-step kernels agree with gfn_nbdev.hvi's whole-path densities (an independent implementation)."
    hvi = pytest.importorskip('gfn_nbdev.hvi')
    torch.manual_seed(0)
    env = DiffusionEnv('banana', T=7, sigma=1.3)
    pf = env.policy(hidden=32, learn_var=False)                # fixed variance: what hvi's Gaussian paths assume
    with torch.no_grad():
        tr = sample_trajectories(env, pf, 500, pb=env.backward_policy())
        xs = tr.states[:, :, :2]                                  # (N, T+1, 2); the last state repeats x (padding)
        xs = xs[:, :env.T + 1]
        drift = lambda x, t: pf.dist(torch.cat([x, torch.full_like(x[:, :1], t)], 1)).mean / env.dt
        torch.testing.assert_close(tr.log_pb, hvi.brownian_bridge_log_pb(xs, env.sigma ** 2), atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(tr.log_pf, hvi.gaussian_log_pf(xs, env.sigma ** 2, drift=drift), atol=1e-4, rtol=1e-5)


# ---------------------------------------------------------------- the losses, unchanged

LOSS_NAMES = ['tb', 'rev_kl', 'fwd_kl', 'renyi', 'tsallis']

@pytest.mark.parametrize('name', LOSS_NAMES)
@pytest.mark.parametrize('task', ['coordinate', 'diffusion'])
def test_losses_run_unchanged(name, task):
    "Every loss gives a finite value and finite gradients on both constructions, and one step of training runs."
    losses = pytest.importorskip('gfn_nbdev.losses')
    torch.manual_seed(0)
    env = CoordinateEnv('banana') if task == 'coordinate' else DiffusionEnv('mixture', T=5)
    pf = env.policy(hidden=32)
    loss = losses.make_loss(name, **(dict(alpha=0.5) if name in ('renyi', 'tsallis') else {}))
    params = list(pf.parameters())
    tr = sample_trajectories(env, pf, 64, pb=env.backward_policy())
    value, diag = loss(tr, params)
    assert value.shape == () and torch.isfinite(value)
    value.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    # three steps of the package's trainer on the same construction
    task, kw = ('continuous', dict(target='banana')) if task == 'coordinate' else ('diffusion', dict(target='mixture', T=5, grid_size=8, n_paths=2))
    t = Trainer(TrainConfig(task=task, task_kw=kw, loss=name, hidden=32, batch_size=32, steps=3, eval_every=3,
                            logz_init='zero', device='cpu', progress=False))
    t.run()
    assert t.step == 3 and math.isfinite(t.history[-1]['jsd'])


# ---------------------------------------------------------------- bad input

def test_bad_input():
    env, denv = CoordinateEnv('mixture'), DiffusionEnv('mixture', T=4)
    pf, dpf = env.policy(), denv.policy()
    cases = [
        (lambda: Grid(((0., 1.), (0., 1.)), 0), 'G must be a positive integer'),
        (lambda: Grid(((0., 1.), (0., math.inf)), 4), 'bounds[1] must be a finite interval'),
        (lambda: env.metrics(pf, G=-3), 'got -3'),
        (lambda: denv.metrics(dpf, G=4, K=0), 'K must be an integer >= 1, got 0'),
        (lambda: importance_log_pt(denv, dpf, denv.backward_policy(), denv.s0(3), K=2.5), 'got 2.5'),
        (lambda: DiffusionEnv('mixture', T=2.5), 'T must be a positive integer, got 2.5'),
        (lambda: GaussianMixture([[0., math.nan]], 1.), 'means has non-finite'),
        (lambda: Banana(shift=math.inf), 'shift must be finite'),
        (lambda: make_target('nope'), "unknown target 'nope'"),
        (lambda: UniformBackward(denv).dist(denv.s0(2)), 'pb=env.backward_policy()'),
        (lambda: GaussianMixture1D(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3)).explore(0.2), 'epsilon=0.2'),
        (lambda: grid_probs(torch.tensor([0., math.nan])), 'NaN'),
    ]
    for f, msg in cases:
        with pytest.raises(ValueError if 'pb=env' not in msg else NotImplementedError, match=None) as e: f()
        assert msg in str(e.value), (msg, str(e.value))
    for m in (pf, dpf):
        with torch.no_grad(): m.net[0].weight[0, 0] = math.nan
    with pytest.raises(ValueError, match='non-finite'): sample_trajectories(env, pf, 4)
    with pytest.raises(ValueError, match='non-finite'): sample_trajectories(denv, dpf, 4, pb=denv.backward_policy())
    with pytest.raises(ValueError, match='non-finite'): env.metrics(pf, G=8)


@slow
def test_quick_training_reduces_jsd_all_losses():
    "Slow: every loss divides the untrained JSD by > 5 on the 9-mixture (coordinate construction, 300 steps)."
    models = train_each(TrainConfig(task='continuous', task_kw=dict(target='mixture'), hidden=64, batch_size=256,
                                    logz_init='zero', steps=300, eval_every=300, device='cpu', progress=False))
    for k, t in models.items(): assert t.history[-1]['jsd'] < t.history[0]['jsd'] / 5, (k, t.history)

def test_presets_through_the_trainer_factory():
    "`make_task` passes `preset`: raw coordinates and the KDE JS for 'paper', the defaults (no jsd_kde) for 'ours'."
    from gfn_nbdev.training import make_task
    ours, paper = make_task('continuous'), make_task('continuous', preset='paper', target='banana', js_samples=500)
    assert (ours.preset, ours.standardize, ours.js_samples) == ('ours', True, 0)
    assert (paper.standardize, paper.js_samples, paper.target.name) == (False, 500, 'banana')
    torch.manual_seed(0)
    pf = paper.policy()
    # raw units: with zero output weights the first step's mixture sits at 0 with unit scales
    with torch.no_grad():
        for p in pf.net[-1].parameters(): p.zero_()
        d = pf.dist(paper.s0(1))
    assert torch.allclose(d.means, torch.zeros_like(d.means)) and torch.allclose(d.log_scales, torch.zeros_like(d.log_scales))
    m = paper.metrics(pf, G=64)
    assert set(m) == {'jsd', 'l1', 'jsd_kde'} and 0 < m['jsd_kde'] < math.log(2)
    with pytest.raises(ValueError, match="preset must be one of"): make_task('continuous', preset='raw')

def test_kde_jsd_noise_floor_shrinks_with_the_sample_size():
    "Two independent samples of the same target: the KDE JS is sampling noise only, and falls as n grows."
    t, g = nine_mixture(), Grid(nine_mixture().view, 60)
    draw = lambda n, s: t.sample(n, generator=torch.Generator().manual_seed(s)).double()
    small = [kde_jsd(draw(500, s), draw(500, s + 10), g) for s in range(3)]
    large = [kde_jsd(draw(8000, s), draw(8000, s + 10), g) for s in range(3)]
    assert max(large) < min(small), (small, large)
