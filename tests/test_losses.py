"Property tests of every registered loss over random DAGs and batches (seeded loops, no extra dependency)."
import math
import pytest
import torch
import torch.nn as nn
from gfn_nbdev.core import *
from gfn_nbdev.exact import *
from gfn_nbdev.balance import TB, DB, SubTB, VarGrad
from gfn_nbdev.losses import LOSSES, make_loss, loss_args
from conftest import random_dag

BALANCE = {'tb', 'db', 'subtb', 'vargrad'}
DIVERGENCES = {'rev_kl', 'fwd_kl', 'renyi', 'tsallis'}

def balanced(env):
    "The policy with p_F = p_B (uniform p_B) on a GraphEnv, its exact log-flows as a linear layer, and log Z."
    M, A = env.M, env.n_actions
    R = env.log_r.exp().nan_to_num(0.)                                  # (M,) 0 where stopping is not allowed
    indeg = (env.parents >= 0).sum(1).clamp(min=1).to(R)
    F = R.clone()
    for s in reversed(range(M)):                                       # edges go i -> j with i < j: reverse order is topological
        for c in env.children[s].tolist():
            if c >= 0: F[s] = F[s] + F[c] / indeg[c]
    logits = torch.zeros(M, A)
    for s in range(M):
        for a, c in enumerate(env.children[s].tolist()):
            if c >= 0: logits[s, a] = torch.log(F[c] / indeg[c])
        logits[s, A - 1] = torch.log(R[s]) if env.can_stop[s] else 0.
    flow = nn.Linear(M, 1, bias=False)
    with torch.no_grad(): flow.weight.copy_(F.log()[None])
    return TablePolicy(env, logits), flow, F[0].log().item()

def test_on_policy_flags():
    assert set(LOSSES) == BALANCE | DIVERGENCES
    # every registered loss takes behaviour-policy (ε-uniform, tempered) batches: the divergences reweight by p_F/q
    assert not any(c.on_policy for c in LOSSES.values())
    assert all(issubclass(c, Loss) for c in LOSSES.values())

@pytest.mark.parametrize('seed', range(8))
def test_all_losses_finite_with_gradients(seed):
    env = random_dag(seed, n=6 + seed % 5)
    torch.manual_seed(seed)
    pf = TablePolicy(env, 2 * torch.randn(env.M, env.n_actions))
    params = list(pf.parameters())
    N = int(torch.randint(2, 40, (1,)))
    tr = sample_trajectories(env, pf, N, epsilon=0.3 * (seed % 2))     # off-policy batches too: still finite
    kw = dict(subtb=dict(lam=float(torch.rand(1)) * 2 + 0.05), renyi=dict(alpha=0.5 + seed % 3 - 1.),
              tsallis=dict(alpha=[0.5, 2., -1.][seed % 3]))
    for name in LOSSES:
        loss = make_loss(name, env=env, **kw.get(name, {}))
        tr.log_pf_steps = log_pf_of(env, pf, tr)
        value, diag = loss(tr, params)
        assert value.shape == () and torch.isfinite(value), (name, value)
        assert all(type(v) is float for v in diag.values()), (name, diag)
        pf.zero_grad()
        value.backward()
        g = pf.logits.grad
        assert g is not None and torch.isfinite(g).all(), name
        for p in loss.parameters(): assert p.grad is None or torch.isfinite(p.grad).all(), name

@pytest.mark.parametrize('seed', range(6))
def test_balance_losses_zero_at_balance_any_sampler(seed, float64):
    "p_F = p_B with exact flows: every balance loss and its gradient vanish, on-policy or not; positive when perturbed."
    env = random_dag(100 + seed)
    pf, flow, logZ = balanced(env)
    ts = enumerate_trajectories(env, pf)
    assert torch.allclose(ts.log_ratio, torch.full_like(ts.log_ratio, -logZ), atol=1e-10)
    torch.manual_seed(seed)
    tr = sample_trajectories(env, pf, 24, epsilon=0.5 * (seed % 2), temperature=1 + seed % 3)
    losses = dict(tb=TB(logZ), db=DB(env, log_flow=flow), subtb=SubTB(env, 0.5 + seed, log_flow=flow), vargrad=VarGrad())
    for name, loss in losses.items():
        tr.log_pf_steps = log_pf_of(env, pf, tr)
        value, _ = loss(tr)
        pf.zero_grad(); flow.zero_grad()
        value.backward()
        assert abs(value.item()) < 1e-20, (name, value.item())
        assert pf.logits.grad.abs().max() < 1e-9, name
        for p in loss.parameters(): assert p.grad.abs().max() < 1e-9, name
    with torch.no_grad(): pf.logits.add_(0.3 * torch.randn_like(pf.logits))
    tr = sample_trajectories(env, pf, 24)
    for name, loss in losses.items():
        assert loss(tr)[0].item() > 1e-8, name

def test_make_loss_errors():
    env = random_dag(0)
    with pytest.raises(ValueError, match='valid losses are tb, db, subtb, vargrad, rev_kl, fwd_kl, renyi, tsallis'):
        make_loss('kl')
    for name in LOSSES:
        with pytest.raises(ValueError, match=rf"loss '{name}' got unexpected argument\(s\) nonsense"):
            make_loss(name, env=env, nonsense=1)
        assert 'env' not in loss_args(name)
    for name in ('db', 'subtb'):
        with pytest.raises(ValueError, match='needs the environment'): make_loss(name)

FIELDS = ('states', 'actions', 'log_pf_steps', 'log_pb_steps', 'log_q_steps', 'lengths', 'x', 'log_reward')

@pytest.mark.parametrize('seed', range(3))
def test_every_loss_refuses_a_log_reward_of_the_wrong_shape(seed):
    "(N, 1), (1,) or (N-1,) log-rewards raise a ValueError naming the shapes, never broadcast into a loss."
    env = random_dag(seed)
    torch.manual_seed(seed)
    pf = TablePolicy(env, torch.randn(env.M, env.n_actions))
    tr = sample_trajectories(env, pf, 6)
    for name in LOSSES:
        loss = make_loss(name, env=env)
        assert torch.isfinite(loss(tr, list(pf.parameters()))[0])               # the intact batch is fine
        for bad in (tr.log_reward[:, None], tr.log_reward[:1], tr.log_reward[:-1]):
            t = Trajectories(**{f: getattr(tr, f) for f in FIELDS})
            t.log_reward = bad
            with pytest.raises(ValueError) as e: loss(t, list(pf.parameters()))
            msg = str(e.value)
            # balance losses: 'log_reward must have shape (6,), got ...'; estimators: their own 1-D / same-length check
            assert ('log_reward must have shape (6,), got ' + str(tuple(bad.shape)) in msg
                    or 'log_reward must be a 1-D tensor' in msg or f'same length, got [6, 6, {len(bad)}]' in msg), (name, msg)

@pytest.mark.parametrize('field', ['log_pf_steps', 'log_pb_steps', 'lengths', 'states'])
def test_balance_losses_refuse_fields_of_different_lengths(field):
    "A per-step field or the lengths cut to N-1 trajectories raises in TB, DB, SubTB and VarGrad, naming the lengths."
    env = random_dag(3)
    torch.manual_seed(3)
    pf = TablePolicy(env, torch.randn(env.M, env.n_actions))
    tr = sample_trajectories(env, pf, 5)
    t = Trajectories(**{f: getattr(tr, f) for f in FIELDS})
    setattr(t, field, getattr(tr, field)[:-1])
    for loss in (TB(), DB(env, hidden=8), SubTB(env, hidden=8), VarGrad()):
        with pytest.raises(ValueError, match=r'inconsistent Trajectories: .* must have shape \((4|5)'):
            loss(t)
