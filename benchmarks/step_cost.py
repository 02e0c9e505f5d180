"""Cost of one training step: a divergence estimator with control variates against a plain TB step.

    OMP_NUM_THREADS=1 python benchmarks/step_cost.py [--ndim 4] [--height 8] [--batch 64] [--steps 40] [--warmup 60] [--threads 1]
        [--seed 0] [--quick] [--out report.txt]

One step = sample a batch on-policy + evaluate the loss + backward + Adam step, on the hypergrid with the 2x256 MLP
policy. TB is the inline reference ((logZ + l)^2).mean() with a learned scalar logZ (the package's TB lives in
gfn_nbdev.balance). The score-function control variate of Renyi and Tsallis costs vector-Jacobian products of the
batch's log p_F, which replace the surrogate's own backward: four with `sf_coef='crossfit'` (the score sums S and H
of each half of the batch, so that each half's coefficient comes from the other), two with `sf_coef='batch'`. None
for the reverse KL (H = S, so a-hat = 1 and its term vanishes) and the forward KL (no grad-f term). Every variant
first trains `--warmup` steps (trajectories lengthen from ~5 to ~15 transitions over the first ~60 as the policy
learns), then the variants are timed in interleaved rounds so that machine load affects all alike; prints the
median ms/step over `--steps` rounds, with the range, in wall and process-CPU time.
"""
import statistics
import torch
from gfn_nbdev.core import sample_trajectories
from gfn_nbdev.estimators import ReverseKL, ForwardKL, Renyi, Tsallis
from gfn_nbdev.tasks.hypergrid import HyperGrid
from timing import parser, setup, spread, stopwatch

class InlineTB(torch.nn.Module):
    "(logZ + l)^2 averaged over the batch, with a learned scalar logZ: the reference step."
    def __init__(self):
        super().__init__(); self.logZ = torch.nn.Parameter(torch.zeros(()))
    def forward(self, traj, params=None):
        loss = ((self.logZ + traj.log_ratio) ** 2).mean()
        return loss, dict(loss=loss.item())

def make_step(env, loss, seed, batch):
    torch.manual_seed(seed)
    pf = env.policy()
    params = list(pf.parameters())
    opt = torch.optim.Adam([dict(params=params, lr=1e-3)] + ([dict(params=list(loss.parameters()), lr=1e-1)]
                                                            if list(loss.parameters()) else []))
    def step():
        tr = sample_trajectories(env, pf, batch)
        value, _ = loss(tr, params)
        opt.zero_grad(set_to_none=True); value.backward(); opt.step()
    return step

def main():
    p = parser(__doc__, quick=dict(steps=3, warmup=2))
    p.add_argument('--ndim', type=int, default=4); p.add_argument('--height', type=int, default=8)
    p.add_argument('--batch', type=int, default=64); p.add_argument('--steps', type=int, default=40)
    p.add_argument('--warmup', type=int, default=60)
    a = setup(p)
    env = HyperGrid(a.ndim, a.height)
    variants = {'TB (inline)': InlineTB(), 'reverse KL, no CV': ReverseKL(None), "reverse KL, 'loo+sf'": ReverseKL('loo+sf'),
                "forward KL, 'loo'": ForwardKL('loo'), 'Renyi-0.5, no CV': Renyi(0.5, None),
                "Renyi-0.5, 'loo+sf'": Renyi(0.5, 'loo+sf'), "Renyi-0.5, 'loo+sf' batch": Renyi(0.5, 'loo+sf', sf_coef='batch'),
                "Tsallis-0.5, 'loo+sf'": Tsallis(0.5, 'loo+sf'),
                "Tsallis-0.5, 'loo+sf' batch": Tsallis(0.5, 'loo+sf', sf_coef='batch')}
    steps = {k: make_step(env, L, a.seed, a.batch) for k, L in variants.items()}
    for st in steps.values():
        for _ in range(a.warmup): st()
    wall, cpu = {k: [] for k in steps}, {k: [] for k in steps}
    for i in range(a.steps):                      # interleaved rounds
        for k, st in steps.items():
            with stopwatch() as sw: st()
            wall[k].append(sw.seconds); cpu[k].append(sw.seconds.cpu)
    print(f"hypergrid D={a.ndim} H={a.height}, batch {a.batch}, 2x256 MLP, intra-op threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}; {a.warmup} warm-up steps, median [min-max] over {a.steps} rounds")
    ref, ref_c = statistics.median(wall['TB (inline)']), statistics.median(cpu['TB (inline)'])
    for k in steps:
        lo, m, hi = spread(wall[k]); mc = statistics.median(cpu[k])
        print(f"  {k:28s} {m * 1e3:7.1f} ms/step [{lo * 1e3:.1f}-{hi * 1e3:.1f}]  x{m / ref:4.2f} of TB   "
              f"CPU {mc * 1e3:7.1f} ms  x{mc / ref_c:4.2f}")

if __name__ == '__main__': main()
