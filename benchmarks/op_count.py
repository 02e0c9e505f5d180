"""Operations and host synchronisations per training step, by loss: what a GPU step pays for besides arithmetic.

    python benchmarks/op_count.py [--variants tb,db,subtb,rev_kl,fwd_kl,renyi,tsallis,renyi:last] [--batch 64]
        [--warmup 3] [--merge-rows N] [--seed 0] [--quick] [--out FILE]

Results: benchmarks/results/op_count.txt (a few seconds; the counts are exact and the same on every machine for a
given torch version, seed and code).

On a GPU a small batch is bound by launches and by waits, not by arithmetic: each ATen operation is at least one kernel
launch (several microseconds of host time), and each synchronisation (a value the host reads back: `.item()`,
`.tolist()`, `bool(t)`, a data-dependent shape such as `nonzero` or boolean-mask indexing) stalls the host until the
device has finished everything queued before it. Neither shows in CPU timings, where an operation costs a few
microseconds and a "synchronisation" nothing. This script counts both, exactly, on the CPU, with `gfn_nbdev.testing.HostSyncs`: every ATen
operation dispatched during a phase of `Trainer.train_step` (views included), and among them the ones that make the
host wait on CUDA: `_local_scalar_dense` (item, bool, int, float), `equal`, `is_nonzero`, `nonzero`, `unique*`,
`masked_select`, `bincount`, `repeat_interleave`, `index`/`index_put` with a boolean index, plus every `Tensor.tolist()`
(which reads the tensor without dispatching an operation).

Configuration: hypergrid D=4 H=8, batch 64 (--batch), 2x256 MLP, fixed uniform p_B (that of benchmarks/sf_speed.py),
CPU, torch seed --seed. Each variant's trainer takes --warmup steps first (the first batch of a divergence loss also
checks its per-layer sums against score_vjps, once), then one step is counted in three phases: sampling the batch,
the loss and its backward, and the rest (gradient clipping, the Adam step, the running statistics). `--merge-rows` sets
gfn_nbdev.estimators.MERGE_ROWS (merging the records of one state runs on the CPU only; the default lets it run, as on
a CPU; a huge value shows the count a CUDA run sees).
"""
from pathlib import Path
import sys
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from timing import parser, setup

CONFIG = dict(ndim=4, height=8, hidden=256, n_layers=2)
DIV = dict(alpha=0.5, cv='loo+sf')
VARIANTS = {'tb': ('tb', {}), 'db': ('db', {}), 'subtb': ('subtb', {}), 'rev_kl': ('rev_kl', dict(cv='loo+sf')),
            'fwd_kl': ('fwd_kl', dict(cv='loo')), 'renyi': ('renyi', DIV), 'tsallis': ('tsallis', DIV),
            'renyi:last': ('renyi', dict(DIV, sf_params='last'))}
def count_step(loss, kw, a):
    "(ops, syncs) of each phase of one counted `train_step` of a fresh trainer for `loss`, after `a.warmup` steps."
    from gfn_nbdev.training import Trainer, TrainConfig
    tr = Trainer(TrainConfig(task_kw=dict(ndim=CONFIG['ndim'], height=CONFIG['height']), loss=loss, loss_kw=kw,
                             batch_size=a.batch, hidden=CONFIG['hidden'], n_layers=CONFIG['n_layers'],
                             steps=10 ** 9, progress=False, device='cpu', seed=a.seed))
    for _ in range(a.warmup): tr.train_step()
    from gfn_nbdev.testing import HostSyncs
    out = {}
    with HostSyncs() as c: batch = tr.sample_batch()
    out['sample'] = c
    with HostSyncs() as c:
        value, _ = tr.batch_loss(batch)
        tr.opt.zero_grad(set_to_none=True); value.backward()
    out['loss+backward'] = c
    with HostSyncs() as c:                                                    # the rest of Trainer.train_step
        tr.reduce_gradients()
        if tr.cfg.clip > 0: torch.nn.utils.clip_grad_norm_([p for g in tr.opt.param_groups for p in g['params']], tr.cfg.clip)
        tr.opt.step(); tr.sched.step(); tr.observe_batch(batch); tr._losses.append(value.item())
    out['rest'] = c
    return out, int(batch.capture.lpf.shape[0]) if getattr(batch, 'capture', None) is not None else None

def main(argv=None):
    p = parser(__doc__, quick=dict(variants='tb,renyi', warmup=1), out=None)
    p.add_argument('--variants', default=','.join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument('--batch', type=int, default=64, help='trajectories per batch; default 64')
    p.add_argument('--warmup', type=int, default=3, help='training steps before the counted one; default 3')
    p.add_argument('--merge-rows', type=int, default=None, help='gfn_nbdev.estimators.MERGE_ROWS (default: the library\'s)')
    a = setup(p, argv)
    import gfn_nbdev.estimators as E
    if a.merge_rows is not None: E.MERGE_ROWS = a.merge_rows
    bad = [v for v in a.variants.split(',') if v not in VARIANTS]
    if bad: p.error(f"unknown variants {bad}; known: {', '.join(VARIANTS)}")
    print(f"ATen operations (syncs: those that wait for the device on CUDA) in one Trainer.train_step: hypergrid "
          f"D={CONFIG['ndim']} H={CONFIG['height']}, batch {a.batch}, 2x{CONFIG['hidden']} MLP, uniform p_B, CPU, "
          f"torch {torch.__version__}, seed {a.seed}, after {a.warmup} steps; MERGE_ROWS = {E.MERGE_ROWS}")
    phases = ('sample', 'loss+backward', 'rest')
    print(f"  {'variant':11s} {'records':>7s} " + ' '.join(f"{ph + ' ops/syncs':>24s}" for ph in phases)
          + f" {'step ops/syncs':>16s}   syncs of loss+backward by kind")
    for v in a.variants.split(','):
        out, L = count_step(*VARIANTS[v], a)
        ops, syncs = sum(c.ops for c in out.values()), sum(sum(c.syncs.values()) for c in out.values())
        kinds = ', '.join(f"{k} {n}" for k, n in sorted(out['loss+backward'].syncs.items()))
        print(f"  {v:11s} {L if L is not None else '-':>7} "
              + ' '.join(f"{f'{out[ph].ops}/{sum(out[ph].syncs.values())}':>24s}" for ph in phases)
              + f" {f'{ops}/{syncs}':>16s}   {kinds}")

if __name__ == '__main__': main()
