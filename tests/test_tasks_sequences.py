"Heavier checks of the sequence task: exact p_T by levels against the generic DP, the factorised optimum, corner cases."
import math
import pytest
import torch
from gfn_nbdev.core import *
from gfn_nbdev.exact import *
from gfn_nbdev.evaluation import ModeTracker, exact_metrics
from gfn_nbdev.tasks.sequences import *

torch.set_num_threads(1)

class PositionPolicy(torch.nn.Module):
    "A policy that sees only the position: p_F(a | x_{1:k}) = softmax(logits[k]) (the additive target's optimum)."
    def __init__(self, env, logits):
        super().__init__()
        self.env, self.logits = env, logits                                # (L, |A|)
    def dist(self, s):
        k = self.env.seq_len(s).clamp(max=self.env.length - 1)
        full = torch.cat([self.logits[k], torch.zeros(len(s), 1, dtype=self.logits.dtype)], 1)
        return MaskedCategorical(full, self.env.forward_mask(s))

@pytest.mark.parametrize('A,L,reward', [(2, 1, 'additive'), (3, 4, 'modes'), (5, 3, 'additive'), (2, 7, 'modes'), (3, 4, 'potts'), (4, 3, 'potts')])
def test_levels_match_generic_dp_and_enumeration(A, L, reward):
    env = SequenceDesign(A, L, reward=reward, seed=A + L)
    torch.manual_seed(0)
    pf = env.policy(hidden=16)
    lp = sequence_log_pt(env, pf)
    assert torch.allclose(lp, exact_log_pt(env, pf), atol=1e-5)
    ts = enumerate_trajectories(env, pf)
    assert len(ts) == A ** L and torch.equal(ts.x_index.sort().values, torch.arange(A ** L))
    assert torch.allclose(torch.zeros(A ** L, dtype=ts.log_pf.dtype).index_add(0, ts.x_index, ts.log_pf), lp.to(ts.log_pf), atol=1e-5)
    assert torch.equal(env.seq_index(env.terminal_states()), torch.arange(A ** L))

def test_levels_match_generic_dp_at_full_size():
    env = SequenceDesign()
    torch.manual_seed(0)
    pf = env.policy()
    with torch.no_grad():
        assert torch.allclose(sequence_log_pt(env, pf), exact_log_pt(env, pf), atol=1e-4)

def test_gradients_match_generic_dp():
    env = SequenceDesign(3, 4, reward='modes')
    torch.manual_seed(0)
    pf = env.policy(hidden=16)
    w = torch.randn(81)
    g1 = torch.autograd.grad((w * sequence_log_pt(env, pf).exp()).sum(), list(pf.parameters()))
    g2 = torch.autograd.grad((w * exact_log_pt(env, pf).exp()).sum(), list(pf.parameters()))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g1, g2))

def test_additive_target_factorises_and_its_optimum_ignores_the_prefix():
    torch.set_default_dtype(torch.float64)
    try:
        for beta in (0.5, 2.0):
            env = SequenceDesign(beta=beta, seed=7)
            logits = beta * env.position_weights[:, None] * env.token_values[None]     # (L, |A|)
            lp = sequence_log_pt(env, PositionPolicy(env, logits))
            assert (lp - exact_log_pi(env)).abs().max() < 1e-12
            m = exact_metrics(env, PositionPolicy(env, logits))                        # the generic route agrees
            assert m['l1'] < 1e-10
    finally:
        torch.set_default_dtype(torch.float32)

@pytest.mark.parametrize('beta,M', [(0.7, 1), (3.0, 8), (5.0, 20)])
def test_modes_partition_function(beta, M):
    env = SequenceDesign(4, 5, reward='modes', beta=beta, n_modes_seq=M, seed=1)
    lz = torch.logsumexp(env.log_reward64(env.terminal_states()), 0).item()
    assert abs(lz - math.log(M * (1 + 3 * math.exp(-beta)) ** 5)) < 1e-9

def test_mode_counts_and_ties():
    env = SequenceDesign()
    x = env.terminal_states()
    lr = env.log_reward64(x)
    K = math.ceil(0.005 * 8 ** 6)
    assert env.is_mode(x).sum() == K and lr[env.is_mode(x)].min() >= lr[~env.is_mode(x)].max()
    menv = SequenceDesign(reward='modes', mode_seqs=[[0] * 6])            # one mode: R = exp(-3 d_H)
    d = (x != 0).sum(1)
    assert torch.allclose(menv.log_reward64(x), -3.0 * d.double())
    # top 0.5% = 1311 sequences; d <= 1: 1 + 6*7 = 43, d <= 2: 43 + 15*49 = 778, d <= 3: 778 + 20*343 = 7638
    assert torch.equal(menv.is_mode(x), d <= 3)

def test_length_one_and_binary_alphabet():
    env = SequenceDesign(2, 1)
    assert env.terminal_states().tolist() == [[0], [1]] and len(env.all_states()) == 3
    torch.manual_seed(0)
    pf = env.policy(hidden=8)
    tr = sample_trajectories(env, pf, 1000)
    assert (tr.lengths == 2).all() and torch.allclose(tr.log_pf, sequence_log_pt(env, pf)[env.seq_index(tr.x)])

def test_mdp_inverses_and_masks():
    env = SequenceDesign(5, 9)                                            # keys: 6^9 fits in int64
    torch.manual_seed(0)
    k = torch.randint(0, 9, (3000,))
    s = torch.where(torch.arange(9) < k[:, None], torch.randint(0, 5, (3000, 9)), -1)
    a = torch.randint(0, 5, (3000,))
    s2 = env.step(s, a)
    assert torch.equal(env.seq_len(s2), k + 1) and torch.equal(s2[torch.arange(3000), k], a)
    assert torch.equal(env.backward_step(s2, env.backward_action(s, a)), s)
    assert torch.equal(env.forward_action(s2, torch.zeros(3000, dtype=torch.long)), a)
    fm = env.forward_mask(s2)
    assert torch.equal(fm[:, -1], k + 1 == 9) and torch.equal(fm[:, :-1].all(1), k + 1 < 9)
    assert env.state_key(s2).unique().numel() == s2.unique(dim=0).shape[0]

def test_mode_tracker_and_constructor_for_the_trainer():
    env = SequenceDesign(device='cpu', n_tokens=4, length=5, reward='modes', beta=2.0, n_modes_seq=3, seed=2)
    pf = env.policy(32, 1)
    tracker = ModeTracker(env, k=10)
    torch.manual_seed(0)
    for _ in range(5):
        tr = sample_trajectories(env, pf, 200)
        tracker.update(tr.x, tr.log_reward)
    assert tracker.n_modes >= 1 and math.isfinite(tracker.top_k())
    m = exact_metrics(env, pf)
    with torch.no_grad():
        pt, pi = sequence_log_pt(env, pf).double().exp(), exact_log_pi(env).double().exp()
    assert abs(m['l1'] - (pt - pi).abs().sum().item()) < 1e-5

def test_potts_reward_is_pairwise_and_not_factorised():
    """The Potts log-reward is fields + couplings over pairs i < j: a brute-force sum over positions agrees, and changing
    one coupling entry changes exactly the sequences that use it."""
    env = SequenceDesign(3, 4, reward='potts', seed=5)
    x = env.terminal_states()
    brute = torch.tensor([sum(env.fields[i, s[i]].item() for i in range(4))
                          + sum(env.couplings[i, j, s[i], s[j]].item() for i in range(4) for j in range(i + 1, 4))
                          for s in x.tolist()], dtype=torch.float64)
    assert torch.allclose(env.log_reward64(x), env.beta * brute, atol=1e-12)
    J = env.couplings.clone(); J[1, 3, 2, 0] += 1.
    env2 = SequenceDesign(3, 4, reward='potts', seed=5, couplings=J)
    changed = (env2.log_reward64(x) - env.log_reward64(x)).abs() > 1e-9
    assert torch.equal(changed, (x[:, 1] == 2) & (x[:, 3] == 0))
    J = env.couplings.clone(); J[3, 1] += 5.                                # entries with i > j are ignored
    assert torch.equal(SequenceDesign(3, 4, reward='potts', seed=5, couplings=J).log_reward64(x), env.log_reward64(x))

def test_presets_through_the_trainer_factory():
    "`make_task` passes `preset` like any constant; 'ours' keeps the additive reward's numbers, 'paper' is the Potts one."
    from gfn_nbdev.training import make_task
    ours, paper = make_task('sequences'), make_task('sequences', preset='paper', seed=2)
    assert ours.preset == 'ours' and ours.reward == 'additive' and ours.beta == 1.0
    assert torch.equal(ours.log_reward64(ours.terminal_states()[:100]), SequenceDesign().log_reward64(ours.terminal_states()[:100]))
    assert (paper.reward, paper.beta, paper.n_tokens, paper.length) == ('potts', 1.3, 8, 6)
    assert torch.equal(paper.fields, SequenceDesign(reward='potts', seed=2).fields)
    with pytest.raises(ValueError, match="preset must be one of"): make_task('sequences', preset='Table 1')
