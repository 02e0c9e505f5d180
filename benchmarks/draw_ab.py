"""The sampler with the library's draw against `torch.multinomial`'s, alternated on the same batches.

    OMP_NUM_THREADS=1 python benchmarks/draw_ab.py [--train 150] [--rounds 30] [--batches 10] [--batch 64]
        [--device cpu] [--default-malloc] [--threads 1] [--seed 0] [--quick] [--out FILE]

`MaskedCategorical.sample` draws with multinomial's own algorithm (argmax of p / Exp(1) noise) but skips the checks
that `torch.multinomial` makes of p at every call (chapter 00). This script times `Trainer.sample_batch` with the
library's draw ('new') and with `torch.multinomial(p, 1)` patched in ('old') on the benchmark's configuration
(hypergrid D=4 H=8, 2x256 MLP, uniform p_B), after `--train` TB steps. Each round times `--batches` batches of the same
seeds with each draw, in alternating order. Process CPU time; on CUDA wall time between synchronisations. It checks
that both draws give the same batches. Printed: each draw's median ms per batch and the paired ratio new/old (median
and range over rounds).
"""
import statistics, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from timing import fmt_spread, parser, setup, stopwatch

def main():
    p = parser(__doc__, quick=dict(train=2, rounds=2, batches=2), device=True, malloc=True)
    p.add_argument('--train', type=int, default=150, help='TB training steps before timing; default 150')
    p.add_argument('--rounds', type=int, default=30); p.add_argument('--batches', type=int, default=10)
    p.add_argument('--batch', type=int, default=64, help='trajectories per batch; default 64')
    a = setup(p)
    from gfn_nbdev.core import MaskedCategorical
    from gfn_nbdev.training import Trainer, TrainConfig
    t = Trainer(TrainConfig(task_kw=dict(ndim=4, height=8), loss='tb', batch_size=a.batch, hidden=256, n_layers=2,
                            steps=10 ** 9, progress=False, device=a.device, seed=a.seed))
    for _ in range(a.train): t.train_step()
    draws = dict(new=MaskedCategorical.sample, old=lambda self: torch.multinomial(self.log_probs.exp(), 1)[:, 0])
    cuda = torch.device(a.device).type == 'cuda'
    def batches(r):
        out = []
        for i in range(a.batches):
            torch.manual_seed(10 ** 6 * a.seed + 1000 * r + i); out.append(t.sample_batch())
        return out
    ms, same = {k: [] for k in draws}, True
    try:
        for r in range(a.rounds):
            got = {}
            for k in (('old', 'new') if r % 2 else ('new', 'old')):
                MaskedCategorical.sample = draws[k]
                with stopwatch(a.device) as sw: got[k] = batches(r)
                ms[k].append(1e3 * (sw.seconds if cuda else sw.seconds.cpu) / a.batches)
            same &= all(torch.equal(u.actions, v.actions) for u, v in zip(got['new'], got['old']))
    finally: MaskedCategorical.sample = draws['new']
    print(f"sampling, hypergrid D=4 H=8, batch {a.batch}, 2x256 MLP trained {a.train} TB steps, "
          f"{torch.cuda.get_device_name() if cuda else 'CPU'}, intra-op threads {torch.get_num_threads()}, torch "
          f"{torch.__version__}, seed {a.seed}; {a.rounds} rounds x {a.batches} batches, "
          f"{'wall time (synchronised)' if cuda else 'process CPU time'}; the same batches with both draws: {same}")
    for k in ('old', 'new'):
        print(f"  {k + (' (torch.multinomial)' if k == 'old' else ' (MaskedCategorical.sample)'):32s} "
              f"{statistics.median(ms[k]):7.2f} ms per batch")
    print(f"  paired ratio new/old: {fmt_spread([n / o for n, o in zip(ms['new'], ms['old'])], '.3f')}")
    if not same: raise SystemExit("the two draws gave different batches")

if __name__ == '__main__': main()
