"The task contract of `Env` (core chapter), checked on every registered task at a small size."
import math
import pytest
import torch
import torch.nn as nn
from gfn_nbdev.core import Env, sample_trajectories
from gfn_nbdev.training import TASKS, TrainConfig, Trainer, make_task

# Small constants per task (seconds, not minutes), and whether the task can be listed at that size.
SMALL = dict(hypergrid=dict(ndim=2, height=4), sets=dict(n_items=6, set_size=3), sequences=dict(n_tokens=3, length=3),
             phylo=dict(n=4, length=8), dags=dict(d=3), continuous=dict(), diffusion=dict(T=5))
ENUMERABLE = dict(hypergrid=True, sets=True, sequences=True, phylo=True, dags=True, continuous=False, diffusion=False)

# Sizes on both sides of each task's enumeration limit: `enumerable` says exactly when `terminal_states()` can be listed.
CASES = [('hypergrid', dict(ndim=2, height=4), True),
         ('sets', dict(n_items=8, set_size=3), True), ('sets', dict(), False),              # 32 choose 16: too many
         ('sequences', dict(n_tokens=3, length=4), True), ('sequences', dict(n_tokens=8, length=8), False),
         ('phylo', dict(n=4), True), ('phylo', dict(n=8), False),
         ('dags', dict(d=3), True), ('dags', dict(d=6), False),
         ('continuous', dict(), False), ('diffusion', dict(T=3), False)]

def test_every_registered_task_is_checked():
    assert set(SMALL) == set(TASKS) == set(ENUMERABLE) == {t for t, _, _ in CASES}

@pytest.mark.parametrize('name', sorted(TASKS))
def test_task_contract(name):
    torch.manual_seed(0)
    env = make_task(name, **SMALL[name])
    assert isinstance(env, Env)
    # policy: builds, and samples a batch of complete trajectories; backward_policy scores them
    pf, pb = env.policy(hidden=16, n_layers=1), env.backward_policy()
    assert isinstance(pf, nn.Module) and isinstance(pb, nn.Module)
    with torch.no_grad(): tr = sample_trajectories(env, pf, 8, pb=pb)
    assert len(tr) == 8 and tr.x.shape == (8, *env.state_shape)
    for k in ('log_pf', 'log_pb', 'log_reward'): assert torch.isfinite(getattr(tr, k)).all(), (name, k, getattr(tr, k))
    assert (tr.lengths > 1).any()                       # some trajectory moved: p_B scored at least one transition
    # metrics: a dict of finite numbers (none by default)
    m = env.metrics(pf)
    assert isinstance(m, dict) and all(isinstance(v, (int, float)) and math.isfinite(v) for v in m.values()), (name, m)
    # is_mode: None (no modes), or one bool per object
    md = env.is_mode(tr.x)
    assert md is None or (isinstance(md, torch.Tensor) and md.dtype == torch.bool and md.shape == (8,)), (name, md)
    # enumerable: declared, and true to what the task can list
    assert env.enumerable is ENUMERABLE[name], (name, env.enumerable)
    if env.enumerable:
        x = env.terminal_states()
        assert x.shape[1:] == tuple(env.state_shape) and env.log_reward(x).shape == (len(x),)
    # the trainer reads only the contract: the exact metrics (with the exact log Z) exactly where the task is
    # enumerable, the task's own metrics always (the continuous tasks' l1 and jsd are estimated on a grid)
    row = Trainer(TrainConfig(task=name, task_kw=SMALL[name], steps=1, batch_size=8, hidden=16, n_layers=1,
                              device='cpu', progress=False)).evaluate()
    assert ('log_Z' in row and 'tv' in row) is env.enumerable and 'log_top_k' in row and set(m) <= set(row), (name, row)
    assert all(v is None or math.isfinite(v) for v in row.values() if isinstance(v, float)), (name, row)

@pytest.mark.parametrize('task,kw,expected', CASES, ids=[f"{t}-{e}" for t, _, e in CASES])
def test_enumerable_matches_terminal_states(task, kw, expected):
    env = make_task(task, **kw)
    assert env.enumerable is expected
    if expected:
        x = env.terminal_states()
        assert len(env.state_key(x).unique()) == len(x)
    else:
        with pytest.raises(NotImplementedError): env.terminal_states()

def test_dags_exports_no_methods():
    "Methods attached with @patch stay out of `__all__` (they used to leak as bare functions)."
    import gfn_nbdev.tasks.dags as m
    assert not {'s0', 'is_initial', 'forward_mask', 'backward_mask', 'log_marginal_likelihood', 'encode', 'state_key',
                'all_states', 'is_mode', 'policy'} & set(m.__all__)
    env = m.DAGEnv(3)
    assert env.policy(hidden=8, kind='gnn').net.d == 3 and len(env.terminal_states()) == 25

def test_continuous_tasks_share_one_base():
    "One checked step, state key and mode test for both continuous constructions."
    from gfn_nbdev.tasks.continuous import ContinuousEnv, CoordinateEnv
    from gfn_nbdev.tasks.diffusion import DiffusionEnv
    assert issubclass(CoordinateEnv, ContinuousEnv) and issubclass(DiffusionEnv, ContinuousEnv)
    for name in ('step', 'state_key', 'is_mode', 's0', 'is_initial', '_log_reward'):
        assert getattr(CoordinateEnv, name) is getattr(DiffusionEnv, name) is getattr(ContinuousEnv, name), name
    env = DiffusionEnv('mixture', T=2)
    done = torch.tensor([[0.1, 0.2, 2.]])
    with pytest.raises(ValueError, match='no forward step from complete states'): env.step(done, torch.zeros(1, 2))
