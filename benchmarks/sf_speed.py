"""Step cost of Renyi/Tsallis with the score-function control variate: its coefficient estimated from every parameter's
scores (sf_params='all', the default) or from the final layer's ('last'), against TB; and the variance each removes.

    OMP_NUM_THREADS=1 python benchmarks/sf_speed.py [--rounds 7] [--steps 30] [--reps 3] [--no-variance | --no-speed]
        [--frozen] [--variants tb,rev_kl,...] [--M 60] [--Ns 16,64,256] [--tasks hypergrid,sets] [--cost-only]
        [--cost-rounds 5] [--cost-batches 4] [--batch 64] [--merge-rows N] [--default-malloc] [--threads 1] [--seed 0] [--quick] [--out FILE]

Results: benchmarks/results/sf_speed.txt (about 5 minutes for the speed table and 6 for the variance table on one
shared CPU thread).

Speed: hypergrid D=4 H=8, batch 64, 2x256 MLP, fixed uniform p_B, CPU (the configuration of
benchmarks/vs_torchgfn.py). One iteration is `Trainer.train_step`: sample 64 trajectories on-policy, evaluate the loss,
backward, clip the gradient norm at 10, Adam step. Variants: TB; reverse KL (cv='loo+sf': its coefficient is exactly
1 and never estimated, so sf_params does not apply); Renyi-0.5 and Tsallis-0.5 with cv='loo+sf', sf_coef='crossfit'
and sf_params 'last' or 'all'; and ':all:vjps', the same 'all' losses with the per-layer score sums switched off (their
four sums by `score_vjps`, four backward passes: the cost before the per-layer path, measured in the same process).
`--variants` picks a subset (tb first: the ratios are to it). `--batch` changes the batch size (default 64);
`--default-malloc` leaves glibc's malloc thresholds as they are (by default the script calls `tune_malloc()`, as
`gfn-train` does: without it a step of these sizes faults in 200-1000 fresh pages). `--merge-rows` sets gfn_nbdev.estimators.MERGE_ROWS, the number of records from which a product of the per-layer sums
adds up the records of one state first (default the library's, 256; a huge value switches merging off). Every trainer is built in this one process (seed --seed); a round times `--reps`
blocks of `--steps` iterations of every variant (after a warm-up block, `timing.timed`), in an order rotated from
round to round, and the step-cost ratios to TB are taken within a round (paired), so that drift in the machine's
load moves both sides of a ratio alike. Each variant trains its own policy, and a step's cost grows with the number
of states its batch visits (about 290 per batch of 64 at initialisation, 940-960 after 100-300 steps, for TB and
Renyi alike); --frozen (learning rates 1e-12, the same computations) keeps every variant on the initial policy: the
cost of the short trajectories of an untrained policy, with no drift between rounds. Reported: median [min-max] over rounds of ms per iteration, wall and process
CPU time (on a shared machine the CPU-time figures are the steadier ones).

Variance (unless --no-variance): the measure of benchmarks/cv_variance.py (`gradient_variance` of nbs/06: M on-policy
batches of each N from the task's 2x256 MLP at initialisation, torch seed --seed, batch seed N, the same batches
for every loss), for Renyi-0.5 and Tsallis-0.5 without control variate and with 'loo+sf' (cross-fitted) under
sf_params 'last' and 'all', on the set task (|U|=32, |S|=16) and the 2-D hypergrid (H=8). Printed: the reduction
factor trace(no CV) / trace(CV) of each setting and the ratio 'last' / 'all' of the factors (1: 'last' removes as
much variance as 'all').

Cost and variance per CPU-second (in the variance section; --cost-only skips the traces): on the same task, policy and
N, the process CPU time of one gradient evaluation (sample N trajectories on-policy, the loss, its backward) for each
setting, over --cost-rounds rounds of --cost-batches batches per setting (the same seeded batches for every setting in
a round, the order rotated, the median over rounds of the per-round means). The figure of merit is trace(CV) x cost:
the variance of a gradient averaged over a fixed CPU budget is proportional to it. Printed for 'last' against 'all':
cost last/all and, with the traces, (trace x cost) last/all = (factor all / factor last) x (cost last / cost all);
below 1 means that 'last' gives the lower variance per CPU-second.
"""
import statistics, time
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
            'tsallis:all': ('tsallis', dict(alpha=0.5, cv='loo+sf', sf_params='all')),
            'renyi:all:vjps': ('renyi', dict(alpha=0.5, cv='loo+sf', sf_params='all')),
            'tsallis:all:vjps': ('tsallis', dict(alpha=0.5, cv='loo+sf', sf_params='all'))}
DEFAULT_VARIANTS = 'tb,rev_kl,renyi:last,renyi:all,tsallis:last,tsallis:all,renyi:all:vjps,tsallis:all:vjps'

def trainer_step(loss, kw, seed, frozen=False, vjps=False):
    "One training iteration (`Trainer.train_step`) of gfn_nbdev for `loss` with arguments `kw`; `frozen`: learning rates 1e-12; `vjps`: score sums by score_vjps (k backward passes), never per layer."
    from gfn_nbdev.training import Trainer, TrainConfig
    lrs = dict(lr=1e-12, lr_aux=1e-12) if frozen else {}
    tr = Trainer(TrainConfig(task_kw=dict(ndim=CONFIG['ndim'], height=CONFIG['height']), loss=loss, loss_kw=kw,
                             batch_size=CONFIG['batch'], hidden=CONFIG['hidden'], n_layers=CONFIG['n_layers'],
                             steps=10 ** 9, progress=False, device='cpu', seed=seed, **lrs))
    if vjps: tr.loss._fast_score_sums = lambda *args: None               # the per-layer path declines: score_vjps
    return tr.train_step

def speed(a):
    steps = {v: trainer_step(*VARIANTS[v], a.seed, a.frozen, v.endswith(':vjps')) for v in a.variants.split(',')}
    names = list(steps)
    res = {v: [] for v in names}
    print(f"speed: hypergrid D={CONFIG['ndim']} H={CONFIG['height']}, batch {CONFIG['batch']}, 2x{CONFIG['hidden']} MLP, "
          f"uniform p_B, CPU, intra-op threads {torch.get_num_threads()}, torch {torch.__version__}; {a.rounds} rounds x "
          f"{len(names)} variants in one process, {a.reps} x {a.steps} timed iterations each after {a.steps} warm-up, seed {a.seed}"
          + (", frozen (learning rates 1e-12: every variant samples from the same initial policy)" if a.frozen else ''))
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
              + ('   target <= 1.15' if v.endswith((':last', ':all')) else ''))

def grad_cost(env, pf, losses, N, rounds, batches, seed):
    "{name: median over `rounds` of the mean process CPU ms of one gradient evaluation (sample N, loss, backward)}."
    from gfn_nbdev.core import sample_trajectories
    params, names = [p for p in pf.parameters() if p.requires_grad], list(losses)
    res = {k: [] for k in names}
    for r in range(rounds + 1):                                          # round 0: warm-up, not kept
        for k in names[r % len(names):] + names[:r % len(names)]:
            torch.manual_seed(seed + 1000 * r)                           # the same batches for every setting in a round
            c = time.process_time()
            for _ in range(batches):
                v, _ = losses[k](sample_trajectories(env, pf, N), params)
                torch.autograd.grad(v, params)
            if r: res[k].append(1e3 * (time.process_time() - c) / batches)
    return {k: statistics.median(v) for k, v in res.items()}

def setting(a, make_env, none):
    """The task, its policy at initialisation (torch seed `a.seed`) and the losses: per divergence (renyi, tsallis) no
    CV (key `none`) and 'loo+sf' with sf_params 'last' and 'all'. Tsallis gets one fixed shift for all its instances
    (the largest log R of a first batch), so that traces compare."""
    from gfn_nbdev.estimators import Renyi, Tsallis
    from gfn_nbdev.core import sample_trajectories
    env = make_env()
    torch.manual_seed(a.seed)
    pf = env.policy()
    c = sample_trajectories(env, pf, 64).log_reward.max().item()
    losses = {}
    for d, mk in dict(renyi=lambda **kw: Renyi(0.5, **kw), tsallis=lambda **kw: Tsallis(0.5, log_shift=c, **kw)).items():
        losses[(d, none)] = mk(cv=None)
        for sp in ('last', 'all'): losses[(d, sp)] = mk(cv='loo+sf', sf_params=sp)
    return env, pf, losses

def variance(a):
    from gfn_nbdev.control_variates import gradient_variance
    from gfn_nbdev.tasks.sets import SetGeneration
    from gfn_nbdev.tasks.hypergrid import HyperGrid
    envs = dict(sets=lambda: SetGeneration(32, 16, seed=0), hypergrid=lambda: HyperGrid(2, 8))
    Ns = [int(n) for n in a.Ns.split(',')]
    if a.cost_only: return cost_table(a, envs, Ns)
    print(f"\nvariance: reduction factor trace(no CV) / trace(CV) of the gradient over M = {a.M} batches per N, 2x256 MLP "
          f"at initialisation (torch seed {a.seed}), batch seed N, alpha = 0.5; 'loo+sf' cross-fitted, â from the final "
          f"layer ('last') or all parameters ('all')")
    print(f"  {'task':10s} {'N':>5s} {'Renyi last':>11s} {'Renyi all':>10s} {'last/all':>9s} {'Tsallis last':>13s} "
          f"{'Tsallis all':>12s} {'last/all':>9s}")
    for task in a.tasks.split(','):
        env, pf, losses = setting(a, envs[task], none=None)
        t0 = time.time()
        for N in Ns:
            rows = gradient_variance(env, pf, losses, [N], a.M, seed=N)
            tr = {r['name']: r['trace'] for r in rows}
            f = {(d, sp): tr[(d, None)] / tr[(d, sp)] for d in ('renyi', 'tsallis') for sp in ('last', 'all')}
            print(f"  {task:10s} {N:5d} {f[('renyi', 'last')]:11.2f} {f[('renyi', 'all')]:10.2f} "
                  f"{f[('renyi', 'last')] / f[('renyi', 'all')]:9.2f} {f[('tsallis', 'last')]:13.2f} "
                  f"{f[('tsallis', 'all')]:12.2f} {f[('tsallis', 'last')] / f[('tsallis', 'all')]:9.2f}   "
                  f"[{time.time() - t0:.0f} s]", flush=True)
            cost = grad_cost(env, pf, {k: v for k, v in losses.items() if k[1] is not None}, N, a.cost_rounds, a.cost_batches, N)
            print(f"  {'':10s} {'':5s} cost ms/grad: Renyi last {cost[('renyi', 'last')]:.1f} all {cost[('renyi', 'all')]:.1f}, "
                  f"Tsallis last {cost[('tsallis', 'last')]:.1f} all {cost[('tsallis', 'all')]:.1f}; (trace x cost) last/all: "
                  + ', '.join(f"{d} {f[(d, 'all')] / f[(d, 'last')] * cost[(d, 'last')] / cost[(d, 'all')]:.2f}" for d in ('renyi', 'tsallis')),
                  flush=True)

def cost_table(a, envs, Ns):
    "The cost of one gradient evaluation per setting, without the traces (--cost-only)."
    print(f"\ncost: process CPU ms per gradient evaluation (sample N on-policy, loss, backward), 2x256 MLP at initialisation "
          f"(torch seed {a.seed}), alpha = 0.5, median over {a.cost_rounds} rounds of {a.cost_batches} batches; 'none': cv=None")
    print(f"  {'task':10s} {'N':>5s} {'Renyi none':>11s} {'last':>7s} {'all':>7s} {'last/all':>9s} {'Tsallis none':>13s} {'last':>7s} "
          f"{'all':>7s} {'last/all':>9s}")
    for task in a.tasks.split(','):
        env, pf, losses = setting(a, envs[task], none='none')
        for N in Ns:
            t0 = time.time()
            k = grad_cost(env, pf, losses, N, a.cost_rounds, a.cost_batches, N)
            print(f"  {task:10s} {N:5d} " + ' '.join(f"{k[(d, 'none')]:{w}.1f} {k[(d, 'last')]:7.1f} {k[(d, 'all')]:7.1f} "
                                                     f"{k[(d, 'last')] / k[(d, 'all')]:9.2f}" for d, w in (('renyi', 11), ('tsallis', 13)))
                  + f"   [{time.time() - t0:.0f} s]", flush=True)

def main():
    p = parser(__doc__, quick=dict(rounds=1, steps=3, reps=1, M=3, Ns='16', tasks='hypergrid', cost_rounds=1, cost_batches=1), reps=3,
               malloc=True)
    p.add_argument('--rounds', type=int, default=7); p.add_argument('--steps', type=int, default=30)
    p.add_argument('--no-variance', action='store_true', help='only the speed table')
    p.add_argument('--frozen', action='store_true', help='speed: learning rates 1e-12, so that every variant keeps sampling '
                   'from the initial policy (its short trajectories; without it each variant times the policy it is learning)')
    p.add_argument('--no-speed', action='store_true', help='only the variance table')
    p.add_argument('--variants', default=DEFAULT_VARIANTS, help=f'speed: the variants timed, tb first; default {DEFAULT_VARIANTS}')
    p.add_argument('--M', type=int, default=60, help='variance: batches per N; default 60')
    p.add_argument('--Ns', default='16,64,256', help='variance: batch sizes; default 16,64,256')
    p.add_argument('--tasks', default='hypergrid,sets', help='variance: tasks (hypergrid, sets)')
    p.add_argument('--cost-only', action='store_true', help='variance section: only the cost per gradient, no traces')
    p.add_argument('--cost-rounds', type=int, default=5, help='cost: rounds (after one warm-up round); default 5')
    p.add_argument('--cost-batches', type=int, default=4, help='cost: batches per setting and round; default 4')
    p.add_argument('--batch', type=int, default=CONFIG['batch'], help=f"speed: batch size; default {CONFIG['batch']}")
    p.add_argument('--merge-rows', type=int, default=None, help="speed and cost: gfn_nbdev.estimators.MERGE_ROWS (default: the library's)")
    a = setup(p)
    print(f"malloc: {'thresholds fixed by tune_malloc (as gfn-train)' if a.malloc_tuned else 'glibc defaults'}")
    CONFIG['batch'] = a.batch
    import gfn_nbdev.estimators as E
    if a.merge_rows is not None: E.MERGE_ROWS = a.merge_rows
    print(f"per-layer sums: records of one state merged in products over MERGE_ROWS = {E.MERGE_ROWS} records or more")
    if not a.no_speed: speed(a)
    if not a.no_variance: variance(a)

if __name__ == '__main__': main()
