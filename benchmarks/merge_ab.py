"""What merging the records of one state saves in the per-layer score sums: the Renyi loss and its backward on one
batch, with merging on and off in alternation.

    OMP_NUM_THREADS=1 python benchmarks/merge_ab.py [--batches 64,96,128,192,256,512,1024] [--train 150] [--rounds 14]
        [--reps 10] [--fresh 0] [--rows 0] [--default-malloc] [--threads 1] [--seed 0] [--quick] [--out FILE]

For each batch size: the hypergrid (D=4, H=8) with the 2x256 MLP, trained `--train` steps with TB at that batch size
(seed --seed), then one batch sampled from it; Renyi-0.5 (cv='loo+sf', sf_params='all', cross-fitted) evaluated with
its backward `--reps` times with gfn_nbdev.estimators.MERGE_ROWS at `--rows` (merging on; default 0: every product
that may merge does, whatever its size) and at 10**9 (off), in alternating order over `--rounds` rounds: where the two
cross is where the library's default MERGE_ROWS belongs. glibc's malloc thresholds are fixed as gfn-train fixes them
(`tune_malloc`) unless `--default-malloc`. Printed: the records per half of the batch, the share of distinct states in
the first half, the median process CPU ms per evaluation with and without merging, and the median over rounds of the
paired ratio on/off with its range. One batch per size: the ratio depends on how often that batch repeats its states.
`--fresh K` times K new batches per round instead, each evaluated once with merging on and once off (the same K
batches for both, sampled before the round): as in training, where a batch is used once, rather than one batch whose
tensors stay in the caches over `--reps` evaluations. The columns then describe the first round's first batch.
"""
import statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from timing import parser, setup

def measure(B, a):
    import gfn_nbdev.estimators as E
    from gfn_nbdev.core import sample_trajectories
    from gfn_nbdev.training import Trainer, TrainConfig
    tr = Trainer(TrainConfig(task_kw=dict(ndim=4, height=8), loss='tb', batch_size=B, hidden=256, n_layers=2, steps=10 ** 9,
                             progress=False, device='cpu', seed=a.seed))
    for _ in range(a.train): tr.train_step()
    params, loss, default = list(tr.pf.parameters()), E.Renyi(0.5), E.MERGE_ROWS
    def draw(seed):
        torch.manual_seed(seed); return sample_trajectories(tr.env, tr.pf, B)
    first = traj = sample_trajectories(tr.env, tr.pf, B)                   # the batch of the one-batch mode
    step = lambda t: loss(t, params)[0].backward()
    step(traj)
    res = {'on': [], 'off': []}
    try:
        for r in range(a.rounds):
            if a.fresh: batches = {name: [draw(1000 * (r + 1) + i) for i in range(a.fresh)] for name in res}   # one copy each way
            if a.fresh and r == 0: first = batches['on'][0]
            for name, rows in (('on', a.rows), ('off', 10 ** 9))[::1 if r % 2 else -1]:
                E.MERGE_ROWS = rows
                c = time.process_time()
                if a.fresh:
                    for t in batches[name]: step(t)
                else:
                    for _ in range(a.reps): step(traj)
                res[name].append(1e3 * (time.process_time() - c) / (a.fresh or a.reps))
    finally: E.MERGE_ROWS = default
    cap, m = first.capture, B // 2
    half = cap.rows < m
    distinct = len(torch.unique(cap.states[half].reshape(int(half.sum()), -1), dim=0)) / int(half.sum())
    ratio = [x / y for x, y in zip(res['on'], res['off'])]
    print(f"  {B:6d} {int(half.sum()):8d} {int((~half).sum()):8d} {distinct:9.0%} {statistics.median(res['on']):9.2f} "
          f"{statistics.median(res['off']):9.2f} {statistics.median(ratio):8.3f} [{min(ratio):.3f}-{max(ratio):.3f}]", flush=True)

def main():
    p = parser(__doc__, quick=dict(batches='64', train=3, rounds=2, reps=1), malloc=True)
    p.add_argument('--batches', default='64,96,128,192,256,512,1024', help='batch sizes; default 64,96,128,192,256,512,1024')
    p.add_argument('--train', type=int, default=150, help='TB training steps before the batch is sampled; default 150')
    p.add_argument('--rounds', type=int, default=14); p.add_argument('--reps', type=int, default=10)
    p.add_argument('--rows', type=int, default=0, help='MERGE_ROWS with merging on; default 0 (every product that may merge)')
    p.add_argument('--fresh', type=int, default=0, help='new batches per round, each evaluated once each way (default 0: one batch, --reps times)')
    a = setup(p)
    import gfn_nbdev.estimators as E
    print(f"merging the records of one state (on: MERGE_ROWS = {a.rows}, off: 10**9; the library's default is {E.MERGE_ROWS}; "
          f"malloc {'tuned' if a.malloc_tuned else 'glibc defaults'}): hypergrid D=4 H=8, 2x256 MLP trained {a.train} "
          f"TB steps, Renyi-0.5 loss + backward on one batch, CPU, intra-op threads {torch.get_num_threads()}, torch "
          f"{torch.__version__}, seed {a.seed}; {a.rounds} rounds x "
          + (f"{a.fresh} fresh batches, each evaluated once each way" if a.fresh else f"{a.reps} evaluations each way"))
    print(f"  {'batch':>6s} {'half A':>8s} {'half B':>8s} {'distinct':>9s} {'on ms':>9s} {'off ms':>9s} {'on/off':>8s} [range]")
    for B in (int(b) for b in a.batches.split(',')): measure(B, a)

if __name__ == '__main__': main()
