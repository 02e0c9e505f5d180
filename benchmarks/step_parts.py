"""Where the extra time of a Renyi/Tsallis training step goes: the parts of a step timed on the same batches.

    OMP_NUM_THREADS=1 python benchmarks/step_parts.py [--train 150] [--rounds 15] [--batches 8] [--batch 64]
        [--hidden 256] [--device cpu] [--default-malloc] [--threads 1] [--seed 0] [--quick] [--out FILE]

Results: benchmarks/results/step_parts.txt (about a minute on one CPU thread).

Configuration: that of benchmarks/sf_speed.py (hypergrid D=4 H=8, batch 64, 2x256 MLP, fixed uniform p_B, CPU; with
`--device cuda` the same on the GPU, each part timed in wall-clock time between two synchronisations). A TB
trainer takes `--train` steps (seed --seed); its policy, copied into a Renyi-0.5 and a Tsallis-0.5 trainer (cv='loo+sf',
cross-fitted, sf_params='all': the defaults), is then frozen. Each round draws `--batches` seeds; for each seed every
trainer samples the same batch (same policy, same seed), and the parts are timed in process CPU time (on a shared
machine steadier than wall time; on CUDA, wall time):

- `sample`: `Trainer.sample_batch` (the TB trainer's; every loss pays it alike);
- `loss+backward` of each loss on its copy of the batch;
- `rest`: gradient clipping and the Adam step (TB's; the same parameters for every loss);
- `2nd products`: the share of the divergence's loss+backward that is its second weight-gradient product per record:
  `capture_score_sums` on the batch with the four rows of the cross-fitted coefficient (S_A, S_B, H_A, H_B) minus the
  same with two rows (S_A, S_B: one product per record, as TB's backward). An exact coefficient from every
  parameter's scores needs both products (see chapter 06), so this part stays whatever the rest of the code does.

Printed: per part the median ms over rounds (each round the mean over its batches); per divergence the step ratio
composed within each round, (sample + rest + its loss+backward) / (sample + rest + TB's), median and range over
rounds; and the ratio without its second products, the floor for an exact coefficient at zero other overhead.
The order of the losses rotates from batch to batch.
"""
import sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from timing import fmt_spread, parser, setup, stopwatch

CONFIG = dict(ndim=4, height=8, hidden=256, n_layers=2)

def trainer(loss, kw, a):
    from gfn_nbdev.training import Trainer, TrainConfig
    return Trainer(TrainConfig(task_kw=dict(ndim=CONFIG['ndim'], height=CONFIG['height']), loss=loss, loss_kw=kw,
                               batch_size=a.batch, hidden=a.hidden, n_layers=CONFIG['n_layers'], steps=10 ** 9,
                               progress=False, device=a.device, seed=a.seed))

def main():
    p = parser(__doc__, quick=dict(train=2, rounds=2, batches=2), device=True, malloc=True)
    p.add_argument('--train', type=int, default=150, help='TB training steps before the policy is frozen; default 150')
    p.add_argument('--rounds', type=int, default=15); p.add_argument('--batches', type=int, default=8)
    p.add_argument('--batch', type=int, default=64, help='trajectories per batch; default 64')
    p.add_argument('--hidden', type=int, default=CONFIG['hidden'],
                   help=f"the MLP's width; default {CONFIG['hidden']} (a narrow one, e.g. 16, leaves the part of each "
                        "loss's cost that does not grow with the width: its small operations)")
    a = setup(p)
    import gfn_nbdev.estimators as E
    cuda = torch.device(a.device).type == 'cuda'
    def cpu_ms(fn):
        "ms of `fn()`: process CPU time, or on CUDA wall time between synchronisations; and its result."
        with stopwatch(a.device) as sw: out = fn()
        return 1e3 * (sw.seconds if cuda else sw.seconds.cpu), out
    tb = trainer('tb', {}, a)
    for _ in range(a.train): tb.train_step()
    div = {'renyi': trainer('renyi', dict(alpha=0.5, cv='loo+sf'), a), 'tsallis': trainer('tsallis', dict(alpha=0.5, cv='loo+sf'), a)}
    for t in div.values(): t.pf.load_state_dict(tb.pf.state_dict())
    trs = {'tb': tb, **div}
    def batch(t, seed):
        torch.manual_seed(seed); return t.sample_batch()
    def loss_backward(t, b):
        v, _ = t.batch_loss(b); v.backward()
    def rest():
        torch.nn.utils.clip_grad_norm_(tb.params, tb.cfg.clip); tb.opt.step(); tb.opt.zero_grad(set_to_none=True)
    for t in trs.values(): loss_backward(t, batch(t, 10 ** 6))          # warm-up (and each loss's one check of its per-layer sums)
    tb.opt.param_groups[0]['lr'] = 0.                                     # `rest` runs Adam's arithmetic but keeps the policy frozen
    N, m = a.batch, a.batch // 2
    M = E.halves(N, torch.device(a.device), m)[0].to(torch.get_default_dtype())
    parts = {k: [] for k in ('sample', 'rest', 'tb', 'renyi', 'tsallis', '2nd products')}
    names = list(trs)
    t0 = time.time()
    for r in range(a.rounds):
        acc = {k: 0. for k in parts}
        for i in range(a.batches):
            seed = 1000 * r + i
            ms, b = cpu_ms(lambda: batch(tb, seed)); acc['sample'] += ms
            for k in names[i % 3:] + names[:i % 3]:
                bk = b if k == 'tb' else batch(trs[k], seed)
                acc[k] += cpu_ms(lambda: loss_backward(trs[k], bk))[0]
            acc['rest'] += cpu_ms(rest)[0]
            for t in div.values(): t.opt.zero_grad(set_to_none=True)     # as `rest` leaves TB's: every backward starts alike
            bs = batch(div['renyi'], seed)                                # the second products, on the same batch
            cap, params = bs.capture, div['renyi'].params
            V4 = torch.cat([M, M * torch.rand(N, generator=torch.Generator().manual_seed(seed)).to(M.device)])   # rows 1_A, 1_B, h 1_A, h 1_B
            E.capture_score_sums(cap, V4, params)                         # warm: the first call pays the backward to the layer outputs' graph walk too
            four = min(cpu_ms(lambda: E.capture_score_sums(cap, V4, params))[0] for _ in range(3))
            two = min(cpu_ms(lambda: E.capture_score_sums(cap, V4[:2], params))[0] for _ in range(3))
            acc['2nd products'] += four - two
        for k in parts: parts[k].append(acc[k] / a.batches)
    print(f"step parts: hypergrid D={CONFIG['ndim']} H={CONFIG['height']}, batch {a.batch}, 2x{a.hidden} MLP trained "
          f"{a.train} TB steps then frozen, uniform p_B, {torch.cuda.get_device_name() if cuda else 'CPU'}, intra-op threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}, seed {a.seed}, malloc "
          f"{'tuned (as gfn-train)' if a.malloc_tuned else 'glibc defaults'}; {a.rounds} rounds x {a.batches} batches, "
          f"{'wall time (synchronised)' if cuda else 'process CPU time'} ({time.time() - t0:.0f} s)")
    print(f"  {'part':28s} {'ms, median [min-max] over rounds':>34s}")
    for k, v in parts.items():
        label = {'tb': 'TB loss+backward', 'renyi': 'Renyi-0.5 loss+backward', 'tsallis': 'Tsallis-0.5 loss+backward',
                 '2nd products': 'of which 2nd products'}.get(k, k)
        print(f"  {label:28s} {fmt_spread(v, '.2f'):>34s}")
    base = [s + q + t for s, q, t in zip(parts['sample'], parts['rest'], parts['tb'])]
    print(f"\n  {'composed step ratio to TB':28s} {'exact (as now)':>22s} {'without 2nd products':>22s}")
    for k in div:
        now = [(s + q + x) / b for s, q, x, b in zip(parts['sample'], parts['rest'], parts[k], base)]
        floor = [(s + q + x - p2) / b for s, q, x, p2, b in zip(parts['sample'], parts['rest'], parts[k], parts['2nd products'], base)]
        print(f"  {k:28s} {fmt_spread(now, '.3f'):>22s} {fmt_spread(floor, '.3f'):>22s}")
    extra = [x - t for x, t in zip(parts['renyi'], parts['tb'])]
    print(f"\n  Renyi's extra over TB, ms: {fmt_spread(extra, '.2f')}; its 2nd products {fmt_spread(parts['2nd products'], '.2f')}; "
          f"the rest of the extra {fmt_spread([e - p2 for e, p2 in zip(extra, parts['2nd products'])], '.2f')}")

if __name__ == '__main__': main()
