"""Training iterations/s against torchgfn, measured in the same run: hypergrid D=4 H=8, batch 64, 2x256 MLP, fixed uniform p_B.

    python benchmarks/vs_torchgfn.py [--rounds 5] [--steps 60] [--reps 3] [--threads 1] [--losses tb,rev_kl,fwd_kl,renyi,tsallis]
        [--seed 0] [--quick] [--out report.txt]

torchgfn is a benchmark-only dependency: install it in a separate virtual environment, never in the package's own
(its dependencies are heavy, and it must not leak into the library):

    python -m venv .venv-bench && .venv-bench/bin/pip install torch torchgfn && .venv-bench/bin/pip install --no-deps -e .
    .venv-bench/bin/python benchmarks/vs_torchgfn.py

Without torchgfn the script says so and measures gfn_nbdev alone. Each measurement is one process (one library,
one loss), so that neither library's allocator or caches warm the other's; a round runs every variant once, in an
order rotated from round to round, and ratios are taken within a round (paired), so that drift in the machine's load
moves both sides of a ratio alike. One iteration, on both sides: sample 64 trajectories on-policy, evaluate the loss,
backward, clip the gradient norm at 10, Adam step (lr 1e-3 for the policy, 1e-1 for log Z). Ours is
`Trainer.train_step` (which also updates the mode tracker); torchgfn's is its documented TB loop: `Sampler` with
`save_logprobs=True` and `TBGFlowNet.loss(..., recalculate_all_logprobs=False)`, a `DiscretePolicyEstimator` on a
2x256 LeakyReLU `MLP` with `KHotPreprocessor` (the same one-hot-per-coordinate input as ours) and a `DiscreteUniform`
backward estimator. The divergences use both control variates (`cv='loo+sf'`), alpha = 0.5.

Each worker times `--reps` blocks of `--steps` iterations after one warm-up block (`timing.timed`) and reports wall
and process-CPU iterations/s; the table gives median [min-max] over the rounds. On a shared machine the CPU-time
figures are the steadier ones (wall time also counts the time other processes hold the core).
"""
import argparse, importlib.metadata, importlib.util, json, os, subprocess, sys, time
from pathlib import Path
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from timing import fmt_spread, parser, setup, timed

CONFIG = dict(ndim=4, height=8, batch=64, hidden=256, n_layers=2)
MARK = 'RESULT '

def torchgfn_version():
    "The installed torchgfn version, or None."
    if importlib.util.find_spec('gfn') is None: return None
    try: return importlib.metadata.version('torchgfn')
    except importlib.metadata.PackageNotFoundError: return None

def ours_step(loss: str, seed: int = 0):
    "One training iteration of gfn_nbdev (`Trainer.train_step`) for `loss`."
    from gfn_nbdev.training import Trainer, TrainConfig
    kw = dict(alpha=0.5, cv='loo+sf') if loss in ('renyi', 'tsallis') else dict(cv='loo+sf') if loss in ('rev_kl', 'fwd_kl') else {}
    tr = Trainer(TrainConfig(task_kw=dict(ndim=CONFIG['ndim'], height=CONFIG['height']), loss=loss, loss_kw=kw,
                             batch_size=CONFIG['batch'], hidden=CONFIG['hidden'], n_layers=CONFIG['n_layers'],
                             steps=10 ** 9, progress=False, device='cpu', seed=seed))
    return tr.train_step

def torchgfn_tb_step():
    "One TB training iteration written with torchgfn's public API, matched to `ours_step('tb')`."
    import torch
    from gfn.gym import HyperGrid
    from gfn.estimators import DiscretePolicyEstimator
    from gfn.gflownet import TBGFlowNet
    from gfn.samplers import Sampler
    from gfn.utils.modules import MLP, DiscreteUniform
    from gfn.preprocessors import KHotPreprocessor
    torch.manual_seed(0)
    env = HyperGrid(ndim=CONFIG['ndim'], height=CONFIG['height'])
    pre = KHotPreprocessor(height=env.height, ndim=env.ndim)
    net = MLP(pre.output_dim, env.n_actions, hidden_dim=CONFIG['hidden'], n_hidden_layers=CONFIG['n_layers'],
              activation_fn='leaky_relu')
    pf = DiscretePolicyEstimator(net, env.n_actions, preprocessor=pre)
    pb = DiscretePolicyEstimator(DiscreteUniform(env.n_actions - 1), env.n_actions, preprocessor=pre, is_backward=True)
    gfn = TBGFlowNet(pf, pb)
    sampler = Sampler(pf)
    opt = torch.optim.Adam([dict(params=gfn.pf_pb_parameters(), lr=1e-3), dict(params=gfn.logz_parameters(), lr=1e-1)])
    params = [p for g in opt.param_groups for p in g['params']]
    def step():
        trajectories = sampler.sample_trajectories(env, n=CONFIG['batch'], save_logprobs=True)
        loss = gfn.loss(env, trajectories, recalculate_all_logprobs=False)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.)
        opt.step()
    return step

def worker(a):
    "Time one variant in this process (threads and seed already set by `setup`) and print one result line."
    import torch
    step = torchgfn_tb_step() if a.worker == 'torchgfn:tb' else ours_step(a.worker.split(':')[1], a.seed)
    t, _ = timed(lambda: [step() for _ in range(a.steps)], reps=a.reps)
    print(MARK + json.dumps(dict(variant=a.worker, wall=a.steps / t, cpu=a.steps / t.cpu,
                                 threads=torch.get_num_threads(), torch=torch.__version__)), flush=True)

def run_one(variant: str, a) -> dict:
    cmd = [sys.executable, __file__, '--worker', variant, '--steps', str(a.steps), '--reps', str(a.reps),
           '--threads', str(a.threads), '--seed', str(a.seed)]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [l for l in p.stdout.splitlines() if l.startswith(MARK)]
    if p.returncode or not lines:
        raise SystemExit(f"worker {variant} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):])

def main():
    p = parser(__doc__, quick=dict(rounds=1, steps=3, reps=1, losses='tb,renyi'), reps=3)
    p.add_argument('--rounds', type=int, default=5); p.add_argument('--steps', type=int, default=60)
    p.add_argument('--losses', default='tb,rev_kl,fwd_kl,renyi,tsallis')
    p.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    a = setup(p)
    if a.worker: return worker(a)
    version = torchgfn_version()
    losses = a.losses.split(',')
    if 'tb' not in losses: losses = ['tb'] + losses
    variants = (['torchgfn:tb'] if version else []) + [f'ours:{l}' for l in losses]
    import torch, gfn_nbdev
    print(f"hypergrid D={CONFIG['ndim']} H={CONFIG['height']}, batch {CONFIG['batch']}, 2x{CONFIG['hidden']} MLP, "
          f"uniform p_B, CPU, intra-op threads {a.threads}, torch {torch.__version__}, gfn_nbdev {gfn_nbdev.__version__}, "
          f"torchgfn {version or 'absent'}; {a.rounds} rounds x {len(variants)} processes, {a.reps} x {a.steps} timed "
          f"iterations each after {a.steps} warm-up")
    if not version:
        print(f"  torchgfn is not installed for {sys.executable}: measuring gfn_nbdev only (see the docstring to install "
              f"it in a separate venv)")
    res = {v: [] for v in variants}
    t0 = time.time()
    for r in range(a.rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]   # rotated: no variant always runs first
        for v in order: res[v].append(run_one(v, a))
        print(f"  round {r + 1}/{a.rounds} done ({time.time() - t0:.0f} s)", flush=True)
    print(f"\n  {'variant':14s} {'it/s (wall)':>22s} {'it/s (CPU time)':>22s}   median [min-max] over rounds")
    for v in variants:
        print(f"  {v:14s} {fmt_spread(x['wall'] for x in res[v]):>22s} {fmt_spread(x['cpu'] for x in res[v]):>22s}")
    def ratios(num, den, key, inv=False):    # per round: it/s ratio, or step-cost ratio with inv
        return [(d[key] / n[key]) if inv else (n[key] / d[key]) for n, d in zip(res[num], res[den])]
    print()
    if version:
        for key in ('wall', 'cpu'):
            print(f"  ours TB / torchgfn TB it/s ({key:4s}): {fmt_spread(ratios('ours:tb', 'torchgfn:tb', key), '.2f')}"
                  f"   target >= 2")
    for l in losses:
        if l == 'tb': continue
        for key in ('wall', 'cpu'):
            print(f"  step cost {l} / ours TB ({key:4s}): {fmt_spread(ratios(f'ours:{l}', 'ours:tb', key, inv=True), '.2f')}"
                  + ("   target <= 1.15" if l in ('renyi', 'tsallis') else ''))

if __name__ == '__main__': main()
