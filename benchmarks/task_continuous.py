"""Continuous tasks in R²: sampling throughput (trajectories/s) and grid-evaluation time for both constructions.

    python benchmarks/task_continuous.py [--batch 512] [--threads 1] [--device cpu] [--reps 5] [--T 10]
        [--seed 0] [--quick] [--out report.txt]

The coordinate construction (the paper's: 2 steps, 1-D Gaussian-mixture policy, 2x64 MLP) and the diffusion
extension (T Gaussian steps, Brownian-bridge p_B, 2x64 MLP with a time embedding). Prints the median over `reps`
timed runs after one warm-up, with and without the autograd graph, and the time of one grid evaluation (exact p_T
on 256² cells; importance-sampled p̂_T on 48² cells with K = 8 paths), and of the `preset='paper'` metrics: the
same grid plus `jsd_kde` (kernel density estimates of 10,000 samples on 100² cells; the target's KDE is cached after
the first call). The thread count is stated.
"""
import torch
from timing import parser, setup, timeit as timed
from gfn_nbdev.core import sample_trajectories
from gfn_nbdev.tasks.continuous import CoordinateEnv
from gfn_nbdev.tasks.diffusion import DiffusionEnv

def bench_sampling(env, pf, batch, reps):
    pb = env.backward_policy()
    def run(grad):
        with torch.set_grad_enabled(grad):
            tr = sample_trajectories(env, pf, batch, pb=pb)
            if grad: tr.log_pf.sum().backward()   # the graph must be real: pay for one backward too
    return {grad: timed(lambda: run(grad), reps, env.device) for grad in (False, True)}

def main():
    p = parser(__doc__, quick=dict(batch=64, reps=1, T=4), device=True, reps=5)
    p.add_argument('--batch', type=int, default=512); p.add_argument('--T', type=int, default=10)
    a = setup(p)
    print(f"continuous tasks, batch {a.batch}, 2x64 MLPs, device {a.device}, torch {torch.__version__}, "
          f"intra-op threads {torch.get_num_threads()}")
    envs = [('coordinate (2 steps, K=5 mixture)', CoordinateEnv('mixture', device=a.device), {}),
            (f'diffusion (T={a.T}, Brownian bridge)', DiffusionEnv('mixture', T=a.T, device=a.device), dict(G=48, K=8))]
    for label, env, ekw in envs:
        pf = env.policy()
        t = bench_sampling(env, pf, a.batch, a.reps)
        for grad, s in t.items():
            what = 'sample + backward (training)' if grad else 'sample, no grad'
            print(f"  {label:36s} {what:30s} {s * 1e3:8.1f} ms/batch  {a.batch / s:10.0f} trajectories/s")
        G = ekw.get('G', 256)
        s = timed(lambda: env.metrics(pf, **ekw), max(1, a.reps // 2), env.device)
        how = 'exact p_T' if not ekw else f"p̂_T, K={ekw['K']} paths"
        print(f"  {label:36s} {'grid metrics (' + how + f', {G}x{G})':30s} {s * 1e3:8.1f} ms")
    env = CoordinateEnv('mixture', preset='paper', device=a.device)
    pf = env.policy()
    s = timed(lambda: env.metrics(pf), max(1, a.reps // 2), env.device)
    print(f"  {'coordinate, preset=paper':36s} {'metrics + jsd_kde (n=10,000)':30s} {s * 1e3:8.1f} ms")

if __name__ == '__main__':
    main()
