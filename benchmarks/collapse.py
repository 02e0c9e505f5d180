"""Does training collapse on the DAG or phylogenetics task at the paper's size, and does ε-exploration change that?

TB and the four divergences on the task's `preset='paper'` (DAGs: d = 5, N = 500, linear-Gaussian score;
phylogenetics: 7 species, JC69, 25 sites), on-policy and with ε-uniform exploration (the divergences reweight by
p_F/q), for several seeds. Per run: the exact L1 between p_T and π at the start and the end, the number of distinct
objects among 512 fresh samples of the final policy, and the largest exact p_T(x) (a collapsed run puts almost all
its mass on one object). Batch 64, learning rate 1e-3 decaying linearly to 0 (the paper's protocol), 2×256 MLP.

    python benchmarks/collapse.py --task dags --steps 1000 --seeds 0,1,2 --epsilon 0.2 --out benchmarks/results/collapse_dags.csv
    python benchmarks/collapse.py --task phylo --steps 200 --seeds 0,1,2 --epsilon 0.2 --out benchmarks/results/collapse_phylo.csv

One intra-op thread by default (--threads); rows are appended as runs finish, so an interrupted sweep keeps what it
measured. Each run is seeded by its entry of --seeds (--seed only sets torch's global seed). --quick: 5 steps, seed 0,
TB and Rényi-α, printed only (no CSV unless --out is given).
"""
import csv, os
from pathlib import Path
import torch
from timing import parser, setup, stopwatch
from gfn_nbdev.training import TrainConfig, Trainer
from gfn_nbdev.core import sample_trajectories
from gfn_nbdev.exact import exact_log_pt

LOSSES = ('tb', 'rev_kl', 'fwd_kl', 'renyi', 'tsallis')
COLS = ['task', 'loss', 'epsilon', 'seed', 'steps', 'l1_start', 'l1', 'distinct_of_512', 'max_pT', 'wall_s']

def run(task, loss, epsilon, seed, steps, batch):
    kw = dict(sf_params='all') if loss in ('renyi', 'tsallis') else {}   # the paper's â (all parameters), as in the committed runs
    cfg = TrainConfig(task=task, task_kw=dict(preset='paper'), loss=loss, loss_kw=kw, steps=steps, batch_size=batch,
                      lr_schedule='poly', epsilon=epsilon, seed=seed, eval_every=steps, device='cpu', progress=False)
    with stopwatch() as sw:
        tr = Trainer(cfg)
        res = tr.run()
        with torch.no_grad():
            x = sample_trajectories(tr.env, tr.pf, 512).x
            distinct = len(torch.unique(tr.env.state_key(x)))
            pmax = exact_log_pt(tr.env, tr.pf).exp().max().item()
    return dict(task=task, loss=loss, epsilon=epsilon, seed=seed, steps=steps, l1_start=res['history'][0]['l1'],
                l1=res['final']['l1'], distinct_of_512=distinct, max_pT=pmax, wall_s=round(sw.seconds, 1))

def main():
    p = parser(__doc__, quick=dict(steps=5, seeds='0', losses='tb,renyi'), out=None,
               report=False)
    p.add_argument('--task', default='dags', choices=('dags', 'phylo'))
    p.add_argument('--steps', type=int, default=1000)
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--seeds', default='0,1,2')
    p.add_argument('--epsilon', type=float, default=0.2)
    p.add_argument('--losses', default=','.join(LOSSES))
    a = setup(p)
    out = Path(a.out) if a.out else None
    new = out is not None and not out.exists()
    with (out.open('a', newline='') if out else open(os.devnull, 'w')) as f:
        w = csv.DictWriter(f, fieldnames=COLS)
        if new: w.writeheader()
        for seed in (int(s) for s in a.seeds.split(',')):
            for eps in (0.0, a.epsilon):
                for loss in a.losses.split(','):
                    row = run(a.task, loss, eps, seed, a.steps, a.batch)
                    w.writerow(row); f.flush(); print(row, flush=True)

if __name__ == '__main__': main()
