"""Sampling throughput: trajectories/s for a batch of hypergrid trajectories with a 2x256 MLP policy.

    python benchmarks/sampling.py [--ndim 4] [--height 8] [--batch 4096] [--threads 1] [--device cpu] [--reps 5]
        [--seed 0] [--quick] [--out report.txt]

Prints the median over `reps` timed runs (after one warm-up), with and without the autograd graph
(training keeps the graph; evaluation does not). The thread count is stated: small MLPs on a 2-core
machine run much slower with several intra-op threads under load.
"""
import torch
from timing import parser, setup, timed
from gfn_nbdev.core import sample_trajectories
from gfn_nbdev.tasks.hypergrid import HyperGrid

def bench(env, pf, batch, reps, grad):
    def run():
        with torch.set_grad_enabled(grad):
            tr = sample_trajectories(env, pf, batch)
            if grad: tr.log_pf.sum().backward()  # the graph must be real: pay for one backward too
        return tr
    return timed(run, reps, env.device)

def main():
    p = parser(__doc__, quick=dict(batch=256, reps=1), device=True, reps=5)
    p.add_argument('--ndim', type=int, default=4); p.add_argument('--height', type=int, default=8)
    p.add_argument('--batch', type=int, default=4096)
    a = setup(p)
    env = HyperGrid(a.ndim, a.height, device=a.device)
    pf = env.policy()
    print(f"hypergrid D={a.ndim} H={a.height}, batch {a.batch}, 2x256 MLP, device {a.device}, "
          f"torch {torch.__version__}, intra-op threads {torch.get_num_threads()}")
    for grad in (False, True):
        t, tr = bench(env, pf, a.batch, a.reps, grad)
        label = 'sample + backward (training)' if grad else 'sample, no grad'
        print(f"  {label:30s} {t * 1e3:8.1f} ms/batch  {a.batch / t:10.0f} trajectories/s  "
              f"(mean length {tr.lengths.float().mean():.1f}, max {int(tr.lengths.max())})")

if __name__ == '__main__': main()
