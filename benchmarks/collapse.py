"""Does on-policy training collapse on the DAG task at the paper's size, and does ε-exploration change that?

TB and the four divergences on `DAGEnv(preset='paper')` (d = 5, N = 500, linear-Gaussian score), on-policy and
with ε-uniform exploration (the divergences reweight by p_F/q), for several seeds. Per run: the exact L1 between
p_T and π at the start and the end, the number of distinct DAGs among 512 fresh samples of the final policy, and
the largest exact p_T(x) (a collapsed run puts almost all its mass on one DAG).

    python benchmarks/collapse_dags.py --steps 1000 --seeds 0,1,2 --epsilon 0.2 --out benchmarks/results/collapse_dags.csv

One intra-op thread; rows are appended as runs finish, so an interrupted sweep keeps what it measured.
"""
import argparse, csv, time
from pathlib import Path
import torch
from gfn_nbdev.training import TrainConfig, Trainer
from gfn_nbdev.core import sample_trajectories
from gfn_nbdev.exact import exact_log_pt

LOSSES = ('tb', 'rev_kl', 'fwd_kl', 'renyi', 'tsallis')
COLS = ['task', 'loss', 'epsilon', 'seed', 'steps', 'l1_start', 'l1', 'distinct_of_512', 'max_pT', 'wall_s']

def run(loss, epsilon, seed, steps, batch):
    t0 = time.time()
    cfg = TrainConfig(task='dags', task_kw=dict(preset='paper'), loss=loss, steps=steps, batch_size=batch,
                      lr_schedule='poly', epsilon=epsilon, seed=seed, eval_every=steps, device='cpu', progress=False)
    tr = Trainer(cfg)
    res = tr.run()
    with torch.no_grad():
        x = sample_trajectories(tr.env, tr.pf, 512).x
        distinct = len(torch.unique(tr.env.state_key(x)))
        pmax = exact_log_pt(tr.env, tr.pf).exp().max().item()
    return dict(task='dags', loss=loss, epsilon=epsilon, seed=seed, steps=steps, l1_start=res['history'][0]['l1'],
                l1=res['final']['l1'], distinct_of_512=distinct, max_pT=pmax, wall_s=round(time.time() - t0, 1))

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--steps', type=int, default=1000)
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--seeds', default='0,1,2')
    p.add_argument('--epsilon', type=float, default=0.2)
    p.add_argument('--losses', default=','.join(LOSSES))
    p.add_argument('--out', default='benchmarks/results/collapse_dags.csv')
    a = p.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out); new = not out.exists()
    with out.open('a', newline='') as f:
        w = csv.DictWriter(f, fieldnames=COLS)
        if new: w.writeheader()
        for seed in (int(s) for s in a.seeds.split(',')):
            for eps in (0.0, a.epsilon):
                for loss in a.losses.split(','):
                    row = run(loss, eps, seed, a.steps, a.batch)
                    w.writerow(row); f.flush(); print(row, flush=True)
