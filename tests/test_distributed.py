"""Data-parallel training on torch.distributed (gfn_nbdev.distributed): 2 gloo processes on CPU.

1. For every kind of loss, the gradient of a 2 x (N/2) distributed step (global-batch loss, backward, all-reduced
   gradients) equals the single-process gradient of the same N trajectories, to float64 round-off; and a naive
   per-rank estimate (each rank's own leave-one-out baseline and coefficient, gradients averaged) does not.
   The same holds with the policy under `DataParallelPolicy` (DDP sums its gradients during `backward()`), and
   `DistTrainer`'s `backward()` leaves the same policy gradient on every rank before any manual reduction.
   With the shards as the sampler returns them (each carrying its `LinearCapture`), each rank forms the per-layer
   score sums on its own records (a `JoinedCapture` of the global batch) and the gradient still equals the
   single-process one computed through `score_vjps`.
2. A short 2-process run writes its checkpoint from rank 0 and resumes, and its metrics equal those of a
   single-process run of the same seeded shards.
The workers are module-level functions (torch.multiprocessing spawns fresh interpreters that import this file).
"""
import json
from dataclasses import replace
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gfn_nbdev.core import Trajectories, log_pf_of, sample_trajectories
from gfn_nbdev.losses import make_loss
from gfn_nbdev.tasks.hypergrid import HyperGrid
from gfn_nbdev.training import TrainConfig
from gfn_nbdev.distributed import (DataParallelPolicy, DistTrainer, averaged_parameters, global_loss, globalize, is_local,
                                   process_group, all_reduce_grads, check_shards, rank_device, global_batch, local_scalars)
from gfn_nbdev.estimators import LogProbBatch, _FAST_CHECKED

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason='torch built without gloo')
K, N = 2, 8
# (name, kwargs[, epsilon]): every loss of the registry, and the control variates whose statistics are batch-wide
CASES = [('tb', {}), ('vargrad', {}), ('db', {}), ('subtb', dict(lam=0.9)),
         ('rev_kl', dict(cv='loo')), ('rev_kl', dict(cv=None)), ('fwd_kl', dict(cv='loo')),
         ('renyi', dict(alpha=0.5, cv='loo')), ('renyi', dict(alpha=0.5, cv='loo+sf', sf_coef='crossfit')),
         ('renyi', dict(alpha=-1.0, cv='loo+sf', sf_coef='batch')), ('tsallis', dict(alpha=0.5, cv='loo+sf')),
         ('renyi', dict(alpha=0.5, cv='loo+sf', sf_params='all')), ('tsallis', dict(alpha=0.5, sf_coef='batch', sf_params='all')),
         ('tsallis', dict(alpha=2.0, cv='loo', sf_coef='batch')),
         # off-policy (ε-uniform) batches: self-normalised importance weights over the global batch
         ('rev_kl', dict(cv='loo'), 0.3), ('renyi', dict(alpha=0.5, cv='loo+sf'), 0.3), ('tb', {}, 0.3),
         ('renyi', dict(alpha=0.5, cv='loo+sf', sf_params='all'), 0.3)]
ATOL = 1e-10   # float64: the two sides differ only in the order of summation (~1e-16 relative); gradients here are O(1)

def _rows(tr, i, j):
    "Trajectories i:j of a batch (padding columns kept: every loss masks them)."
    return Trajectories(**{k: getattr(tr, k)[i:j] for k in tr.__dataclass_fields__})

def _setup(epsilon=0.):
    "The same environment, policy and global batch of N trajectories on every rank (same seeds)."
    env = HyperGrid(ndim=2, height=4)
    torch.manual_seed(0); pf = env.policy(hidden=16, n_layers=2)
    torch.manual_seed(1); tr = sample_trajectories(env, pf, N, epsilon=epsilon)
    return env, pf, tr

def _make(name, kw, env):
    torch.manual_seed(2)                                                 # DB/SubTB: the same state-flow network
    loss = make_loss(name, env=env, **kw)
    if loss.logZ is not None:
        with torch.no_grad(): loss.logZ.fill_(1.3)                        # away from the optimum: a non-trivial ∂/∂log Z
    return loss

def _grads(params):
    return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in params])

def _grad_worker(rank, tmp):
    torch.set_num_threads(1); torch.set_default_dtype(torch.float64)
    with process_group('gloo', f'file://{tmp}/pg_grad', rank, K):
        for name, kw, *eps in CASES:
            env, pf, tr = _setup(*eps)
            assert not eps or not torch.equal(tr.log_q, tr.log_pf.detach())   # really off-policy
            params = list(pf.parameters())
            ref_loss, loss = _make(name, kw, env), globalize(_make(name, kw, env))
            every = params + list(ref_loss.parameters())
            v_ref, d_ref = ref_loss(tr, params)                            # single process, all N trajectories
            v_ref.backward(retain_graph=True); g_ref = _grads(every)   # the batch is reused below
            for p in every: p.grad = None
            mine = [_rows(tr, rank * N // K, (rank + 1) * N // K)]          # this rank's N/K, a shard of one
            v, d = global_loss(loss, mine, params)
            v.backward(retain_graph=True)
            all_reduce_grads(params + ([p for p in loss.parameters() if p.requires_grad] if is_local(loss) else []),
                             averaged_parameters(loss))
            g = _grads(params + list(loss.parameters()))
            what = f"{name} {kw}"
            assert abs(v.item() - v_ref.item()) < ATOL, (what, v.item(), v_ref.item())
            assert torch.allclose(g, g_ref, atol=ATOL, rtol=0), (what, (g - g_ref).abs().max().item())
            if 'cv_coef' in d_ref: assert abs(d['cv_coef'] - d_ref['cv_coef']) < ATOL, (what, d['cv_coef'], d_ref['cv_coef'])
            if name in ('vargrad', 'renyi') and kw.get('cv') is not None:   # the naive per-rank estimator differs
                for p in every: p.grad = None
                naive, _ = _make(name, kw, env)(mine[0], params)
                naive.backward(retain_graph=True)
                g_naive = _grads(every)
                dist.all_reduce(g_naive); g_naive /= K                     # DDP's average of per-rank estimates
                assert (g_naive - g_ref).abs().max() > 1e-3, (what, 'naive per-rank estimate should differ')
            # the policy under DDP: both sides re-scored after DDP's broadcast (in place) made the batch's graph stale
            dp = DataParallelPolicy(pf)
            for p in every: p.grad = None
            ref_loss = _make(name, kw, env)
            v_ref, _ = ref_loss(replace(tr, log_pf_steps=log_pf_of(env, pf, tr)), params)
            v_ref.backward(); g_ref = _grads(params + list(ref_loss.parameters()))
            for p in params: p.grad = None
            loss = globalize(_make(name, kw, env))
            mine = _rows(tr, rank * N // K, (rank + 1) * N // K)
            v, _ = global_loss(loss, [replace(mine, log_pf_steps=log_pf_of(env, dp, mine))], params)
            v.backward()                                                   # DDP sums the policy's gradients here
            all_reduce_grads([p for p in loss.parameters() if p.requires_grad] if is_local(loss) else [], averaged_parameters(loss))
            g = _grads(params + list(loss.parameters()))
            assert torch.allclose(g, g_ref, atol=ATOL, rtol=0), (what, 'DDP', (g - g_ref).abs().max().item())
        # DistTrainer: backward() alone leaves the global policy gradient on every rank (DDP), before reduce_gradients
        t = DistTrainer(TrainConfig(**CFG, steps=1))
        t.batch_loss(t.sample_batch())[0].backward()
        g = _grads(t.params)
        every_g = [torch.empty_like(g) for _ in range(K)]; dist.all_gather(every_g, g)
        assert torch.equal(every_g[0], every_g[1]) and g.abs().max() > 0
        # bad input, seen by every rank alike: unequal shares, different settings
        env, pf, tr = _setup()
        with pytest.raises(ValueError, match=r'the same number of trajectories, got \[4, 3\]'):
            global_loss(make_loss('tb'), [_rows(tr, 0, 4 - rank)])
        with pytest.raises(ValueError, match='different values of lr'):
            DistTrainer(TrainConfig(**{**CFG, 'lr': 1e-3 * (1 + rank)}, steps=1))

def test_gradients_equal_single_process(tmp_path):
    mp.spawn(_grad_worker, args=(str(tmp_path),), nprocs=K, join=True)

# the score-function settings whose sums come from the captures: all-parameter and final-layer sums, on and off policy
CAPTURED = [(dict(alpha=0.5, cv='loo+sf'), 0.), (dict(alpha=0.5, cv='loo+sf', sf_coef='batch'), 0.),
            (dict(alpha=0.5, cv='loo+sf', sf_params='last'), 0.), (dict(alpha=0.5, cv='loo+sf'), 0.3)]

def _capture_worker(rank, tmp):
    torch.set_num_threads(1); torch.set_default_dtype(torch.float64)
    with process_group('gloo', f'file://{tmp}/pg_cap', rank, K):
        env = HyperGrid(ndim=2, height=4)
        torch.manual_seed(0); pf = env.policy(hidden=16, n_layers=2)
        dp, params = DataParallelPolicy(pf), list(pf.parameters())       # DDP first: its broadcast writes the weights in place
        per = 2                                                            # two shards of 3 trajectories per rank
        own = range(rank * per, (rank + 1) * per)
        for name in ('renyi', 'tsallis'):
            for kw, eps in CAPTURED:
                def draw(s, policy):
                    torch.manual_seed(10 + s); return sample_trajectories(env, policy, 3, epsilon=eps)
                every = [draw(s, pf) for s in range(K * per)]              # the single-process reference: score_vjps
                whole = LogProbBatch(*(torch.cat([getattr(t, k) for t in every]) for k in ('log_pf', 'log_pb', 'log_reward')),
                                     torch.cat([t.log_q for t in every]) if eps else None)
                assert whole.capture is None
                ref_loss = make_loss(name, **kw)
                v_ref, d_ref = ref_loss(whole, params); v_ref.backward(); g_ref = _grads(params)
                for p in params: p.grad = None
                mine = [draw(s, dp) for s in own]                          # sampled and scored through DDP, captured
                loss = globalize(make_loss(name, **kw))
                b = global_batch(local_scalars(mine), check_sizes=False)
                assert [(a, e) for _, a, e in b.capture.parts] == [(6 * rank, 6 * rank + 3), (6 * rank + 3, 6 * rank + 6)]
                v, d = loss(b, params)
                assert _FAST_CHECKED[loss][dp] is True                     # the per-layer sums were used (and checked)
                v.backward()                                               # DDP sums the policy's gradients
                g, what = _grads(params), f"{name} {kw} eps={eps}"
                assert abs(v.item() - v_ref.item()) < ATOL, (what, v.item(), v_ref.item())
                assert torch.allclose(g, g_ref, atol=ATOL, rtol=0), (what, (g - g_ref).abs().max().item())
                assert abs(d['cv_coef'] - d_ref['cv_coef']) < ATOL, (what, d['cv_coef'], d_ref['cv_coef'])
                for p in params: p.grad = None

def test_captured_score_sums_equal_single_process(tmp_path):
    mp.spawn(_capture_worker, args=(str(tmp_path),), nprocs=K, join=True)

CFG = dict(task_kw=dict(ndim=2, height=4), loss='renyi', loss_kw=dict(alpha=0.5, cv='loo+sf'), batch_size=N, hidden=16,
           eval_every=2, ckpt_every=2, seed=3, progress=False, device='cpu')
METRICS = ('step', 'train_loss', 'l1', 'tv', 'jsd', 'log_Z', 'log_top_k', 'n_modes', 'distinct_x', 'distinct_len')

def _run_worker(rank, tmp):
    torch.set_num_threads(1); torch.set_default_dtype(torch.float64)
    with process_group('gloo', f'file://{tmp}/pg_run', rank, K):
        DistTrainer(TrainConfig(**CFG, steps=4, out=f'{tmp}/run'), shards=K).run()
        DistTrainer(TrainConfig(**CFG, steps=6, out=f'{tmp}/run'), shards=K).run(resume=True)

def test_run_checkpoint_resume_matches_single_process(tmp_path, float64):
    mp.spawn(_run_worker, args=(str(tmp_path),), nprocs=K, join=True)
    run = tmp_path / 'run'
    assert sorted(p.name for p in run.iterdir()) == ['.lock', 'checkpoint.pt', 'config.json', 'final.json', 'metrics.jsonl']
    rows = [json.loads(l) for l in (run / 'metrics.jsonl').read_text().splitlines()]
    ck = torch.load(run / 'checkpoint.pt', weights_only=True)
    assert ck['step'] == 6 and ck['dist'] == dict(shards=K, world_size=K)
    ref = DistTrainer(TrainConfig(**CFG, steps=6), shards=K).run()['history']   # one process, the same 2 seeded shards
    assert [r['step'] for r in rows] == [0, 2, 4, 6]
    for a, b in zip(rows, ref):
        for k in METRICS:
            if b.get(k) is None: assert a.get(k) is None, k; continue
            assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-12), (a['step'], k, a[k], b[k])   # float64 round-off
    assert rows[-1]['l1'] != rows[0]['l1']                                 # it trained

def test_bad_input():
    with pytest.raises(ValueError, match='needs a process group'): DataParallelPolicy(HyperGrid(ndim=2, height=4).policy())
    with pytest.raises(ValueError, match='batch_size=10 is not divisible by 4 shards'): check_shards(10, 4)
    with pytest.raises(ValueError, match='shards=3 must be a multiple of the world size 2'): check_shards(12, 2, 3)
    with pytest.raises(ValueError, match="backend 'nccl' needs CUDA tensors.*'cpu'"): rank_device('cpu', 2, 0, 'nccl')
    with pytest.raises(ValueError, match='batch_size=7 is not divisible by 2 shards'):
        DistTrainer(TrainConfig(**{**CFG, 'batch_size': 7}, steps=1), shards=2)
