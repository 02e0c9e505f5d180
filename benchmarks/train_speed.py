"""Training throughput per loss and batch size: hypergrid D=4 H=8, 2x256 MLP, one thread by default; CPU or CUDA.

    python benchmarks/train_speed.py [--steps 100] [--warmup 60] [--threads 1] [--losses tb,rev_kl,fwd_kl,renyi,tsallis,db,subtb,vargrad]
        [--batches 64] [--device cpu] [--seed 0] [--quick] [--out report.txt]
    python benchmarks/train_speed.py --device cuda --losses tb,renyi,tsallis --batches 64,256,1024,4096,16384 --steps 20 --warmup 20

One iteration = `Trainer.train_step`: sample a batch, evaluate the loss (divergences with both control variates,
alpha = 0.5), backward, clip, Adam step. Each (loss, batch) first trains `--warmup` iterations: the trajectories
lengthen from ~5 to ~15 transitions over the first ~60 as the policy learns to reach the corners, and a step's cost
grows with them. Then 3 timed blocks of `--steps` iterations; prints the median block (wall and process CPU time,
the latter steadier on a shared machine), the range, trajectories per second, the cost relative to the first loss
at the same batch size, and on CUDA the peak memory of the run. `benchmarks/vs_torchgfn.py` runs the side-by-side
comparison with torchgfn.
"""
import torch
from gfn_nbdev.training import Trainer, TrainConfig
from timing import parser, setup, spread, stopwatch

KW = dict(renyi=dict(alpha=0.5, cv='loo+sf'), tsallis=dict(alpha=0.5, cv='loo+sf'), rev_kl=dict(cv='loo+sf'), fwd_kl=dict(cv='loo+sf'))

def main():
    p = parser(__doc__, quick=dict(steps=3, warmup=2), device=True)
    p.add_argument('--steps', type=int, default=100); p.add_argument('--warmup', type=int, default=60)
    p.add_argument('--losses', default='tb,rev_kl,fwd_kl,renyi,tsallis,vargrad,db,subtb')
    p.add_argument('--batches', default='64', help='comma-separated batch sizes; default 64')
    p.add_argument('--ndim', type=int, default=4); p.add_argument('--height', type=int, default=8)
    a = setup(p)
    cuda = torch.device(a.device).type == 'cuda'
    where = torch.cuda.get_device_name(a.device) if cuda else f"CPU, intra-op threads {torch.get_num_threads()}"
    print(f"hypergrid D={a.ndim} H={a.height}, 2x256 MLP, {where}, torch {torch.__version__}; "
          f"{a.warmup} warm-up iterations, 3 blocks of {a.steps}")
    for batch in (int(b) for b in a.batches.split(',')):
        print(f"batch {batch}")
        base = None
        for name in a.losses.split(','):
            if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(a.device)
            tr = Trainer(TrainConfig(task_kw=dict(ndim=a.ndim, height=a.height), loss=name, loss_kw=KW.get(name, {}),
                                     batch_size=batch, steps=10 ** 9, seed=a.seed, progress=False, device=a.device))
            for _ in range(a.warmup): tr.train_step()
            wall, cpu = [], []
            for _ in range(3):
                with stopwatch(a.device) as sw:
                    for _ in range(a.steps): tr.train_step()
                wall.append(sw.seconds / a.steps); cpu.append(sw.seconds.cpu / a.steps)
            (lo, t, hi), tc = spread(wall), spread(cpu)[1]
            base = base or t
            mem = f"  peak {torch.cuda.max_memory_allocated(a.device) / 2 ** 20:8.0f} MiB" if cuda else ''
            print(f"  {name:8s} {1 / t:7.1f} it/s [{1 / hi:.1f}-{1 / lo:.1f}]  {batch / t:9.0f} traj/s  {t * 1e3:8.2f} ms/it"
                  f"  CPU {tc * 1e3:8.2f} ms/it  ({t / base:.2f}x the first loss){mem}")
            del tr

if __name__ == '__main__': main()
