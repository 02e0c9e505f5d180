"""Training iterations/s per loss: hypergrid D=4 H=8, batch 64, 2x256 MLP, CPU, one thread by default.

    python benchmarks/train_speed.py [--steps 100] [--warmup 60] [--threads 1] [--losses tb,rev_kl,fwd_kl,renyi,tsallis,db,subtb,vargrad]
        [--seed 0] [--quick] [--out report.txt]

One iteration = `Trainer.train_step`: sample a batch, evaluate the loss (divergences with both control variates,
alpha = 0.5), backward, clip, Adam step. Each loss first trains `--warmup` iterations: the trajectories lengthen
from ~5 to ~15 transitions over the first ~60 as the policy learns to reach the corners, and a step's cost grows
with them. Then 3 timed blocks of `--steps` iterations; prints the median block (wall and process CPU time, the
latter steadier on a shared machine) and the range. `benchmarks/vs_torchgfn.py` runs the side-by-side comparison.
"""
import torch
from gfn_nbdev.training import Trainer, TrainConfig
from timing import parser, setup, spread, stopwatch

def main():
    p = parser(__doc__, quick=dict(steps=3, warmup=2))
    p.add_argument('--steps', type=int, default=100); p.add_argument('--warmup', type=int, default=60)
    p.add_argument('--losses', default='tb,rev_kl,fwd_kl,renyi,tsallis,vargrad,db,subtb')
    p.add_argument('--ndim', type=int, default=4); p.add_argument('--height', type=int, default=8)
    a = setup(p)
    print(f"hypergrid D={a.ndim} H={a.height}, batch 64, 2x256 MLP, CPU, torch {torch.__version__}, "
          f"intra-op threads {torch.get_num_threads()}; {a.warmup} warm-up iterations, 3 blocks of {a.steps}")
    base = None
    for name in a.losses.split(','):
        kw = dict(alpha=0.5, cv='loo+sf') if name in ('renyi', 'tsallis') else dict(cv='loo+sf') if name in ('rev_kl', 'fwd_kl') else {}
        tr = Trainer(TrainConfig(task_kw=dict(ndim=a.ndim, height=a.height), loss=name, loss_kw=kw, batch_size=64,
                                 steps=10 ** 9, seed=a.seed, progress=False, device='cpu'))
        for _ in range(a.warmup): tr.train_step()
        wall, cpu = [], []
        for _ in range(3):
            with stopwatch() as sw:
                for _ in range(a.steps): tr.train_step()
            wall.append(sw.seconds / a.steps); cpu.append(sw.seconds.cpu / a.steps)
        (lo, t, hi), tc = spread(wall), spread(cpu)[1]
        base = base or t
        print(f"  {name:8s} {1 / t:7.1f} it/s [{1 / hi:.1f}-{1 / lo:.1f}]  {t * 1e3:7.2f} ms/it  CPU {tc * 1e3:7.2f} ms/it"
              f"  ({t / base:.2f}x the first loss)")

if __name__ == '__main__': main()
