"""Step cost of Renyi/Tsallis with the score-function control variate: its coefficient estimated from every parameter's
scores (sf_params='all', the default) or from the final layer's ('last'), against TB; and the variance each removes.

    OMP_NUM_THREADS=1 python benchmarks/sf_speed.py [--rounds 7] [--steps 30] [--reps 3] [--no-variance | --no-speed]
        [--M 60] [--Ns 16,64,256] [--tasks hypergrid,sets] [--threads 1] [--seed 0] [--quick] [--out FILE]

Results: benchmarks/results/sf_speed.txt (about 5 minutes for the speed table and 6 for the variance table on one
shared CPU thread).

Speed: hypergrid D=4 H=8, batch 64, 2x256 MLP, fixed uniform p_B, CPU (the configuration of
benchmarks/vs_torchgfn.py). One iteration is `Trainer.train_step`: sample 64 trajectories on-policy, evaluate the loss,
backward, clip the gradient norm at 10, Adam step. Variants: TB; reverse KL (cv='loo+sf': its coefficient is exactly
1 and never estimated, so sf_params does not apply); Renyi-0.5 and Tsallis-0.5 with cv='loo+sf', sf_coef='crossfit'
and sf_params 'last' or 'all'. Every trainer is built in this one process (seed --seed); a round times `--reps`
blocks of `--steps` iterations of every variant (after a warm-up block, `timing.timed`), in an order rotated from
round to round, and the step-cost ratios to TB are taken within a round (paired), so that drift in the machine's
load moves both sides of a ratio alike. Reported: median [min-max] over rounds of ms per iteration, wall and process
CPU time (on a shared machine the CPU-time figures are the steadier ones).

Variance (unless --no-variance): the measure of benchmarks/cv_variance.py (`gradient_variance` of nbs/06: M on-policy
batches of each N from the task's 2x256 MLP at initialisation, torch seed --seed, batch seed N, the same batches
for every loss), for Renyi-0.5 and Tsallis-0.5 without control variate and with 'loo+sf' (cross-fitted) under
sf_params 'last' and 'all', on the set task (|U|=32, |S|=16) and the 2-D hypergrid (H=8). Printed: the reduction
factor trace(no CV) / trace(CV) of each setting and the ratio 'last' / 'all' of the factors (1: 'last' removes as
much variance as 'all').
"""
import time
from pathlib import Path
import sys
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from timing import fmt_spread, parser, setup, timed

CONFIG = dict(ndim=4, height=8, batch=64, hidden=256, n_layers=2)
VARIANTS = {'tb': ('tb', {}), 'rev_kl': ('rev_kl', dict(cv='loo+sf')),
            'renyi:last': ('renyi', dict(alpha=0.5, cv='loo+sf', sf_params='last')),
            'renyi:all': ('renyi', dict(alpha=0.5, cv='loo+sf', sf_params='all')),
            'tsallis:last': ('tsallis', dict(alpha=0.5, cv='loo+sf', sf_params='last')),
            'tsallis:all': ('tsallis', dict(alpha=0.5, cv='loo+sf', sf_params='all'))}

def trainer_step(loss, kw, seed):
    "One training iteration (`Trainer.train_step`) of gfn_nbdev for `loss` with arguments `kw`."
    from gfn_nbdev.training import Trainer, TrainConfig
    tr = Trainer(TrainConfig(task_kw=dict(ndim=CONFIG['ndim'], height=CONFIG['height']), loss=loss, loss_kw=kw,
                             batch_size=CONFIG['batch'], hidden=CONFIG['hidden'], n_layers=CONFIG['n_layers'],
                             steps=10 ** 9, progress=False, device='cpu', seed=seed))
    return tr.train_step

def speed(a):
    steps = {v: trainer_step(*VARIANTS[v], a.seed) for v in VARIANTS}
    names = list(steps)
    res = {v: [] for v in names}
    print(f"speed: hypergrid D={CONFIG['ndim']} H={CONFIG['height']}, batch {CONFIG['batch']}, 2x{CONFIG['hidden']} MLP, "
          f"uniform p_B, CPU, intra-op threads {torch.get_num_threads()}, torch {torch.__version__}; {a.rounds} rounds x "
          f"{len(names)} variants in one process, {a.reps} x {a.steps} timed iterations each after {a.steps} warm-up, seed {a.seed}")
    t0 = time.time()
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]          # rotated: no variant always runs first
        for v in order:
            t, _ = timed(lambda: [steps[v]() for _ in range(a.steps)], reps=a.reps)
            res[v].append(dict(wall=1e3 * t / a.steps, cpu=1e3 * t.cpu / a.steps))
        print(f"  round {r + 1}/{a.rounds} done ({time.time() - t0:.0f} s)", flush=True)
    print(f"\n  {'variant':14s} {'ms/it (wall)':>22s} {'ms/it (CPU time)':>22s} {'cost / TB (wall)':>22s} {'cost / TB (CPU)':>22s}"
          f"   median [min-max] over rounds")
    for v in names:
        ratio = {k: [x[k] / y[k] for x, y in zip(res[v], res['tb'])] for k in ('wall', 'cpu')}
        print(f"  {v:14s} {fmt_spread(x['wall'] for x in res[v]):>22s} {fmt_spread(x['cpu'] for x in res[v]):>22s} "
              f"{fmt_spread(ratio['wall'], '.2f'):>22s} {fmt_spread(ratio['cpu'], '.2f'):>22s}"
              + ('   target <= 1.15' if v.endswith(':last') else ''))

def variance(a):
    from gfn_nbdev.estimators import Renyi, Tsallis
    from gfn_nbdev.control_variates import gradient_variance
    from gfn_nbdev.tasks.sets import SetGeneration
    from gfn_nbdev.tasks.hypergrid import HyperGrid
    envs = dict(sets=lambda: SetGeneration(32, 16, seed=0), hypergrid=lambda: HyperGrid(2, 8))
    Ns = [int(n) for n in a.Ns.split(',')]
    print(f"\nvariance: reduction factor trace(no CV) / trace(CV) of the gradient over M = {a.M} batches per N, 2x256 MLP "
          f"at initialisation (torch seed {a.seed}), batch seed N, alpha = 0.5; 'loo+sf' cross-fitted, â from the final "
          f"layer ('last') or all parameters ('all')")
    print(f"  {'task':10s} {'N':>5s} {'Renyi last':>11s} {'Renyi all':>10s} {'last/all':>9s} {'Tsallis last':>13s} "
          f"{'Tsallis all':>12s} {'last/all':>9s}")
    for task in a.tasks.split(','):
        env = envs[task]()
        torch.manual_seed(a.seed)
        pf = env.policy()
        # Tsallis: one fixed shift for all its instances (the largest log R of a first batch), so traces compare
        from gfn_nbdev.core import sample_trajectories
        c = sample_trajectories(env, pf, 64).log_reward.max().item()
        losses = {}
        for d, mk in dict(renyi=lambda **kw: Renyi(0.5, **kw), tsallis=lambda **kw: Tsallis(0.5, log_shift=c, **kw)).items():
            losses[(d, None)] = mk(cv=None)
            for sp in ('last', 'all'): losses[(d, sp)] = mk(cv='loo+sf', sf_params=sp)
        t0 = time.time()
        for N in Ns:
            rows = gradient_variance(env, pf, losses, [N], a.M, seed=N)
            tr = {r['name']: r['trace'] for r in rows}
            f = {(d, sp): tr[(d, None)] / tr[(d, sp)] for d in ('renyi', 'tsallis') for sp in ('last', 'all')}
            print(f"  {task:10s} {N:5d} {f[('renyi', 'last')]:11.2f} {f[('renyi', 'all')]:10.2f} "
                  f"{f[('renyi', 'last')] / f[('renyi', 'all')]:9.2f} {f[('tsallis', 'last')]:13.2f} "
                  f"{f[('tsallis', 'all')]:12.2f} {f[('tsallis', 'last')] / f[('tsallis', 'all')]:9.2f}   "
                  f"[{time.time() - t0:.0f} s]", flush=True)

def main():
    p = parser(__doc__, quick=dict(rounds=1, steps=3, reps=1, M=3, Ns='16', tasks='hypergrid'), reps=3)
    p.add_argument('--rounds', type=int, default=7); p.add_argument('--steps', type=int, default=30)
    p.add_argument('--no-variance', action='store_true', help='only the speed table')
    p.add_argument('--no-speed', action='store_true', help='only the variance table')
    p.add_argument('--M', type=int, default=60, help='variance: batches per N; default 60')
    p.add_argument('--Ns', default='16,64,256', help='variance: batch sizes; default 16,64,256')
    p.add_argument('--tasks', default='hypergrid,sets', help='variance: tasks (hypergrid, sets)')
    a = setup(p)
    if not a.no_speed: speed(a)
    if not a.no_variance: variance(a)

if __name__ == '__main__': main()
