"""Data-parallel scaling: training steps/s of 1 and 2 gloo processes (torch.distributed) at a fixed global batch.

    python benchmarks/scaling.py [--procs 1,2] [--losses tb,renyi] [--batch 64] [--steps 40] [--warmup 30] [--device cpu]

Hypergrid D=4 H=8, 2x256 MLP, global batch `--batch` split over the processes (one seeded shard each), one
intra-op thread per process. `procs=1 (plain)` is `Trainer.train_step` without any process group: the baseline
of the overhead. Each configuration first trains `--warmup` steps (trajectories lengthen as the policy learns),
then times `--steps` steps between barriers on rank 0 (3 blocks, the median printed with the range), with rank 0's
process CPU time per step (steadier than wall time on a shared machine: the work one rank does). On a machine
with fewer free cores than processes the processes share cores and the speed-up is bounded by that: the header
prints os.cpu_count(). Appends the rows to benchmarks/results/scaling.csv with `--csv`.
"""
import csv, os, sys, tempfile, time
from pathlib import Path
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import parser, setup, spread

KW = dict(renyi=dict(alpha=0.5, cv='loo+sf'), tsallis=dict(alpha=0.5, cv='loo+sf'), rev_kl=dict(cv='loo+sf'),
          fwd_kl=dict(cv='loo+sf'))

def _cfg(a, loss):
    from gfn_nbdev.training import TrainConfig
    return TrainConfig(task_kw=dict(ndim=4, height=8), loss=loss, loss_kw=KW.get(loss, {}), batch_size=a.batch,
                       steps=10 ** 9, progress=False, device=a.device, hidden=256, n_layers=2)

def _time(tr, a, sync=lambda: None):
    for _ in range(a.warmup): tr.train_step()
    blocks, cpu = [], []
    for _ in range(3):
        sync(); t, c = time.perf_counter(), time.process_time()
        for _ in range(a.steps): tr.train_step()
        sync(); blocks.append((time.perf_counter() - t) / a.steps); cpu.append((time.process_time() - c) / a.steps)
    return spread(blocks), spread(cpu)[1]

def _worker(rank, k, a, loss, init, q):
    torch.set_num_threads(a.threads)
    from gfn_nbdev.distributed import DistTrainer, process_group
    with process_group(a.backend, init, rank, k):
        tr = DistTrainer(_cfg(a, loss), shards=k)
        res = _time(tr, a, lambda: (torch.cuda.synchronize() if tr.device.type == 'cuda' else None, dist.barrier()))
        if rank == 0: q.put(res)

def main():
    p = parser(__doc__, quick=dict(procs='1', losses='tb', steps=2, warmup=2), report=False, device=True)
    p.add_argument('--procs', default='1,2'); p.add_argument('--losses', default='tb,renyi')
    p.add_argument('--batch', type=int, default=64); p.add_argument('--steps', type=int, default=40)
    p.add_argument('--warmup', type=int, default=30); p.add_argument('--backend', default='gloo')
    p.add_argument('--label', default=''); p.add_argument('--csv', action='store_true')
    a = setup(p)
    print(f"hypergrid D=4 H=8, global batch {a.batch}, 2x256 MLP, {a.device}, backend {a.backend}, torch {torch.__version__}, "
          f"{a.threads} thread(s) per process, os.cpu_count()={os.cpu_count()} {a.label}; {a.warmup} warm-up steps, "
          f"3 blocks of {a.steps}")
    rows, ctx = [], mp.get_context('spawn')
    for loss in a.losses.split(','):
        from gfn_nbdev.training import Trainer
        (lo, t, hi), c = _time(Trainer(_cfg(a, loss)), a, torch.cuda.synchronize if a.device.startswith('cuda') else lambda: None)
        base = t
        rows.append(dict(loss=loss, procs='1 (plain)', sps=1 / t, lo=1 / hi, hi=1 / lo, cpu=c))
        for k in map(int, a.procs.split(',')):
            q = ctx.Queue()
            with tempfile.TemporaryDirectory() as tmp:
                mp.start_processes(_worker, args=(k, a, loss, f'file://{tmp}/pg', q), nprocs=k, join=True, start_method='spawn')
            (lo, t, hi), c = q.get()
            rows.append(dict(loss=loss, procs=str(k), sps=1 / t, lo=1 / hi, hi=1 / lo, cpu=c))
        for r in rows[-(1 + len(a.procs.split(','))):]:
            r.update(traj_per_s=r['sps'] * a.batch, vs_plain=r['sps'] * base)
            print(f"  {loss:8s} procs {r['procs']:9s} {r['sps']:7.1f} steps/s [{r['lo']:.1f}-{r['hi']:.1f}]  "
                  f"{r['traj_per_s']:8.0f} traj/s  {r['vs_plain']:.2f}x plain  rank-0 CPU {r['cpu'] * 1e3:.1f} ms/step")
    if a.csv:
        out = Path(__file__).resolve().parent / 'results' / 'scaling.csv'
        new = not out.exists()
        with out.open('a', newline='') as f:
            w = csv.writer(f)
            if new: w.writerow(['loss', 'procs', 'backend', 'device', 'batch', 'steps_per_s', 'steps_per_s_lo', 'steps_per_s_hi',
                                'traj_per_s', 'vs_plain', 'rank0_cpu_ms_per_step', 'torch', 'cpu_count', 'label'])
            for r in rows:
                w.writerow([r['loss'], r['procs'], a.backend, a.device, a.batch, f"{r['sps']:.2f}", f"{r['lo']:.2f}",
                            f"{r['hi']:.2f}", f"{r['traj_per_s']:.0f}", f"{r['vs_plain']:.3f}", f"{r['cpu'] * 1e3:.2f}", torch.__version__,
                            os.cpu_count(), a.label])

if __name__ == '__main__': main()
