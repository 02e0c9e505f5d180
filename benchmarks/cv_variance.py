"""Variance reduction by the control variates (the paper's Figure 2), and the bias of the score-function coefficient.

    OMP_NUM_THREADS=1 python benchmarks/cv_variance.py [--task sets|hypergrid] [--full] [--M 60] [--Ns 16,128]
                                                      [--utility-scale 1.0]
    OMP_NUM_THREADS=1 python benchmarks/cv_variance.py --bias [--Ns 16,64,256] [--M 300]
    Shared flags: [--threads 1] [--seed 0] [--quick] [--out benchmarks/results]; --quick: N = 32, 64 with M = 3, printed
    only (no files unless --out is given).

Variance (default): for each batch size N, draws M on-policy batches from a freshly initialised policy (the 2x256
MLP of the task, seed --seed, 0) and computes, on the same batches, the gradient of every divergence estimator
(alpha = 0.5) under each control-variate setting: none, 'loo', 'loo+sf' (the default: leave-one-out baseline and
the score-function CV with the cross-fitted coefficient, sf_coef='crossfit') and 'loo+sf:batch' (the paper's
same-batch coefficient, sf_coef='batch'). The forward KL has no grad-f term (no 'sf'); for the reverse KL both
coefficients are exactly 1 (no ':batch'). Prints the reduction factor trace(no CV) / trace(CV) per divergence,
setting and N beside the paper's, and saves benchmarks/results/cv_variance_<task>.csv, .png and .txt. Default
N = 2 ... 512 with M batches for N <= 128 and M/2 above (254 s on one shared CPU thread for the sets task, 2 minutes
for the hypergrid); `--full` goes to N = 1024 with M batches everywhere (not timed since the cross-fitted coefficient;
several times longer).

It also prints the factors predicted if the log-ratio l were Gaussian with the measured mean m and variance v and
the CVs removed the best constant baseline: reverse KL 1 + (1 + m)^2 / v; forward KL e^v / (e^v - 1) (lognormal
weights e^-l); Renyi and Tsallis the same with v -> (1 - alpha)^2 v. They explain how the factors depend on the
task: `--utility-scale` shrinks the set task's utilities (and so the spread of l) to test that.

Bias (`--bias`): a 2x32 MLP policy at initialisation (torch seed 0) on the 50-state random layered DAG
`layered_dag(0)`, whose trajectories are enumerated exactly. For Tsallis-0.5 (fixed shift: the largest log R) and
Renyi-0.5, M batches of each N >= 64 and M * 64/N below (the same standard error), drawn i.i.d. from p_F (generator
seed 1, the same batches for every variant): the mean gradient projected on the exact gradient's direction u, as a
ratio <mean gradient, u> / |exact gradient| (1 if unbiased), with its standard error and t, for 'loo+sf'
cross-fitted, 'loo+sf' same-batch and 'loo'; the paired differences to 'loo' (the mean of the score-function CV's
own term, which has a smaller standard error); and the ratio predicted for the same-batch coefficient,
1 + (1 - alpha)/alpha u'B_N u with B_N = E[S S' / |S|^2] (4000 batches, seed 0). Saves
benchmarks/results/cv_variance_bias.csv and .txt (446 s on one shared CPU thread).
"""
import csv, math, time
from pathlib import Path
import torch
from gfn_nbdev.core import sample_trajectories, DiscretePolicy, MLP
from gfn_nbdev.exact import enumerate_trajectories
from gfn_nbdev.divergences import trajectory_divergences, log_Z_of
from gfn_nbdev.estimators import Renyi, Tsallis, flat_grad
from gfn_nbdev.control_variates import (gradient_variance, reduction_factors, plot_cv_variance, predicted_reduction,
                                        cv_losses, gradient_projection, sf_bias_prediction)
from gfn_nbdev.testing import layered_dag
from timing import parser, setup

PAPER = dict(reverse_kl='260-430x', forward_kl='~2x', renyi='4-6x', tsallis='4-6x')   # the paper's Figure 2 (sets)
LABELS = (None, 'loo', 'loo+sf', 'loo+sf:batch')
COLUMNS = [('reverse_kl', 'loo+sf'), ('reverse_kl', 'loo'), ('forward_kl', 'loo'),
           ('renyi', 'loo+sf'), ('renyi', 'loo+sf:batch'), ('renyi', 'loo'),
           ('tsallis', 'loo+sf'), ('tsallis', 'loo+sf:batch'), ('tsallis', 'loo')]

def make_env(task, utility_scale=1.):
    if task == 'sets':
        from gfn_nbdev.tasks.sets import SetGeneration
        f = SetGeneration(32, 16, seed=0).utilities * utility_scale       # U[-1, 1] utilities, optionally scaled
        return SetGeneration(32, 16, utilities=f), f'sets |U|=32, |S|=16, utilities U[-{utility_scale:g}, {utility_scale:g}]'
    from gfn_nbdev.tasks.hypergrid import HyperGrid
    return HyperGrid(2, 8), 'hypergrid D=2, H=8'

def report(rows, Ns, pred, say):
    "Print the reduction-factor table (through `say`)."
    red = {lab: reduction_factors(rows, lab) for lab in LABELS[1:]}
    short = dict(reverse_kl='rKL', forward_kl='fKL', renyi='Renyi', tsallis='Tsallis')
    tag = {'loo+sf': 'xfit', 'loo+sf:batch': 'batch', 'loo': 'loo'}
    say("reduction factor trace(no CV) / trace(CV);  xfit = 'loo+sf' cross-fitted a (default), "
        "batch = 'loo+sf' same-batch a, loo = 'loo' alone")
    say(f"{'N':>6s} " + ' '.join(f"{short[d] + ' ' + tag[c]:>13s}" for d, c in COLUMNS))
    for N in Ns:
        say(f"{N:6d} " + ' '.join(f"{red[c].get((d, N), math.nan):13.2f}" for d, c in COLUMNS))
    first = {d: c for d, c in reversed(COLUMNS)}                       # the prediction is for the full CV
    if pred: say(f"{'pred.':>6s} " + ' '.join(f"{pred[d]:13.1f}" if first[d] == c else ' ' * 13 for d, c in COLUMNS)
                 + "   (Gaussian-l approximation, best constant baselines)")
    say(f"{'paper':>6s} " + ' '.join(f"{PAPER[d]:>13s}" for d, c in COLUMNS))

def plot(rows, label, path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axs = plt.subplots(1, 2, figsize=(11, 4))
    plot_cv_variance(rows, ax=axs[0], cv=('loo+sf', 'loo'), divergences=('reverse_kl', 'forward_kl'),
                     title=f"{label}\nthe KLs; solid: no CV, dashed: 'loo+sf'")
    plot_cv_variance(rows, ax=axs[1], cv=('loo+sf', 'loo+sf:batch', 'loo'), divergences=('renyi', 'tsallis'),
                     title="alpha = 0.5; dashed: 'loo+sf' (cross-fitted a),\ndotted: same-batch a, dash-dot: 'loo'")
    fig.tight_layout(); fig.savefig(path, dpi=80); plt.close(fig)

def read_csv(path):
    with open(path) as fh:
        return [dict(name=(r['divergence'], None if r['cv'] == 'none' else r['cv']), N=int(r['N']), M=int(r['M']),
                     trace=float(r['trace'])) for r in csv.DictReader(fh)]

def bias_table(Ns, M, say):
    "Rows of the projection ratio of each variant on the MLP test bed, and the same-batch prediction."
    torch.set_default_dtype(torch.float64)
    env = layered_dag(0)
    torch.manual_seed(0)
    pf = DiscretePolicy(env, MLP(env.M, env.n_actions, hidden=32))
    params = list(pf.parameters())
    ts = enumerate_trajectories(env, pf)
    c, D = ts.log_reward.max().item(), trajectory_divergences(ts, .5)
    targets = dict(tsallis=math.exp(-.5 * (c - log_Z_of(ts).item())) * flat_grad(D['tsallis'], params),
                   renyi=flat_grad(D['renyi'], params))
    make = dict(tsallis=lambda cv, sc: Tsallis(.5, cv, log_shift=c, sf_coef=sc), renyi=lambda cv, sc: Renyi(.5, cv, sf_coef=sc))
    say(f"MLP test bed: layered_dag(0), {env.M} states, {len(ts)} trajectories, 2x32 MLP (torch seed 0), "
        f"{sum(p.numel() for p in params)} parameters; alpha = 0.5; float64; the same batches for every variant "
        f"(generator seed 1); intra-op threads {torch.get_num_threads()}, torch {torch.__version__}")
    say("ratio = <mean gradient, u> / |exact gradient|, u its direction (1 if unbiased), +- s.e. (t of ratio - 1);")
    say("predicted: the same-batch a, 1 + u'B_N u; paired: (X - loo) on the same batches, the mean of the CV's own term")
    say(f"{'':8s} {'N':>4s} {'M':>5s} {'batch (paper)':>22s} {'predicted':>9s} {'crossfit (default)':>22s} {'loo':>22s}"
        f" {'paired batch-loo':>22s} {'paired xfit-loo':>22s}")
    rows = []
    cell = lambda m, se, t: f"{m:.3f} ± {se:.3f} ({t:+.1f})"
    for d in make:
        for N in Ns:
            t, MN = time.time(), M * max(1, 64 // N)                     # s.e. about that of N = 64 below it
            r = {k: gradient_projection(make[d](cv, sc), ts, params, targets[d], N, MN, seed=1)
                 for k, (cv, sc) in dict(batch=('loo+sf', 'batch'), crossfit=('loo+sf', 'crossfit'), loo=('loo', 'crossfit')).items()}
            pr = sf_bias_prediction(ts, params, targets[d], N, .5)
            paired = {}
            for k in ('batch', 'crossfit'):
                x = r[k]['samples'] - r['loo']['samples']
                m, se = x.mean().item(), x.std().item() / math.sqrt(MN)
                paired[k] = (m, se, m / se)
            say(f"{d:8s} {N:4d} {MN:5d} {cell(r['batch']['ratio'], r['batch']['se'], r['batch']['t']):>22s} {pr['ratio']:9.3f} "
                f"{cell(r['crossfit']['ratio'], r['crossfit']['se'], r['crossfit']['t']):>22s} "
                f"{cell(r['loo']['ratio'], r['loo']['se'], r['loo']['t']):>22s} {cell(*paired['batch']):>22s} "
                f"{cell(*paired['crossfit']):>22s}   [{time.time() - t:.0f}s]")
            rows += [dict(divergence=d, variant=k, N=N, M=MN, ratio=x['ratio'], se=x['se'], t=x['t'],
                          predicted=pr['ratio'] if k == 'batch' else 1.,
                          paired_minus_loo=paired[k][0] if k in paired else 0., paired_se=paired[k][1] if k in paired else 0.)
                     for k, x in r.items()]
    return rows

def main():
    p = parser(__doc__, quick=dict(M=3, Ns='32,64'), out='benchmarks/results', report=False)
    p.add_argument('--task', default='sets', choices=['sets', 'hypergrid'])
    p.add_argument('--full', action='store_true', help='N up to 1024, M batches at every N')
    p.add_argument('--bias', action='store_true', help='the bias table of the score-function coefficient instead')
    p.add_argument('--M', type=int, default=None, help='batches per N (variance: 60, halved above N=128 unless --full; bias: 300, more below N=64)')
    p.add_argument('--Ns', default=None, help='comma-separated batch sizes (default: powers of 2; bias: 16,64,256)')
    p.add_argument('--utility-scale', type=float, default=1., help='sets: scale of the U[-1, 1] item utilities')
    p.add_argument('--from-csv', default=None, help='only print and plot the rows of an earlier run')
    a = setup(p)
    out = Path(a.out) if a.out else None
    if out: out.mkdir(parents=True, exist_ok=True)
    lines = []
    def say(x=''): print(x, flush=True); lines.append(x)
    if a.bias:
        Ns = [int(n) for n in a.Ns.split(',')] if a.Ns else [16, 64, 256]
        t0 = time.time()
        rows = bias_table(Ns, a.M or 300, say)
        say(f"total {time.time() - t0:.0f}s")
        if not out: return
        with open(out / 'cv_variance_bias.csv', 'w', newline='') as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0])); w.writeheader()
            for r in rows: w.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()})
        (out / 'cv_variance_bias.txt').write_text('\n'.join(lines) + '\n')
        print(f"\nsaved {out / 'cv_variance_bias'}.csv, .txt")
        return
    M0 = a.M or 60
    stem = f"cv_variance_{a.task}" + (f"_u{a.utility_scale:g}" if a.utility_scale != 1 else '')
    env, label = make_env(a.task, a.utility_scale)
    if a.from_csv:
        rows = read_csv(a.from_csv)
        report(rows, sorted({r['N'] for r in rows}), None, say)
        plot(rows, label, Path(a.from_csv).with_name(Path(a.from_csv).stem + '.png'))
        return
    torch.manual_seed(a.seed)
    pf = env.policy()
    Ns = [int(n) for n in a.Ns.split(',')] if a.Ns else [2 ** k for k in range(1, 11 if a.full else 10)]
    L = cv_losses(LABELS)
    ell = sample_trajectories(env, pf, 4096).log_ratio.detach()
    pred = predicted_reduction(ell)
    say(f"{label}, 2x256 MLP at initialisation (seed 0), alpha=0.5, intra-op threads {torch.get_num_threads()}, "
        f"torch {torch.__version__}")
    say(f"log-ratio at initialisation (4096 samples): mean {ell.mean():.2f}, sd {ell.std():.2f}")
    rows, t0 = [], time.time()
    for N in Ns:
        M = M0 if (a.full or N <= 128) else max(M0 // 2, 10)
        t = time.time()
        rows += gradient_variance(env, pf, L, [N], M, seed=N)
        say(f"  N={N:5d}  M={M:4d}  {time.time() - t:6.1f}s")
    say(f"total {time.time() - t0:.0f}s\n")
    report(rows, Ns, pred, say)
    if not out: return
    with open(out / f"{stem}.csv", 'w', newline='') as fh:
        w = csv.writer(fh); w.writerow(['task', 'divergence', 'cv', 'N', 'M', 'trace'])
        for r in rows: w.writerow([a.task, r['name'][0], r['name'][1] or 'none', r['N'], r['M'], f"{r['trace']:.6g}"])
    plot(rows, label, out / f"{stem}.png")
    (out / f"{stem}.txt").write_text('\n'.join(lines) + '\n')
    print(f"\nsaved {out / stem}.csv, .png, .txt")

if __name__ == '__main__': main()
