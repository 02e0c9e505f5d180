"""Sequence task timings: exact p_T over all 8^6 sequences (by levels, and by the generic DP over the state graph),
and sampling throughput at batch 256 (default 2x256 MLP policy) for the paper's size and a small one.

    python benchmarks/task_sequences.py [--threads 1] [--device cpu] [--reps 5] [--seed 0] [--quick] [--out report.txt]

Medians over `reps` timed runs after one warm-up; the intra-op thread count is printed.
"""
import torch
from timing import once, parser, setup, timeit
from gfn_nbdev.core import sample_trajectories
from gfn_nbdev.exact import exact_log_pt, state_graph
from gfn_nbdev.tasks.sequences import SequenceDesign, sequence_log_pt

def main():
    p = parser(__doc__, quick=dict(reps=1), device=True, reps=5)
    a = setup(p)
    dev = torch.device(a.device)
    print(f"sequence design, device {a.device}, torch {torch.__version__}, intra-op threads {torch.get_num_threads()}")
    env = SequenceDesign(device=dev)
    pf = env.policy()
    with torch.no_grad():
        t_lv = timeit(lambda: sequence_log_pt(env, pf), a.reps, dev)
        t_graph, _ = once(lambda: state_graph(env))
        t_dp = timeit(lambda: exact_log_pt(env, pf), a.reps, dev)
    print(f"  |A|=8 L=6 (262,144 sequences, 299,593 states), 2x256 MLP, no grad: exact p_T by levels {t_lv * 1e3:.0f} ms; "
          f"generic DP {t_dp * 1e3:.0f} ms + state graph {t_graph * 1e3:.0f} ms (once)")
    t_r = timeit(lambda: env.log_reward(env.terminal_states()), a.reps, dev)
    menv = SequenceDesign(reward='modes', device=dev)
    t_m = timeit(lambda: menv.log_reward(menv.terminal_states()), a.reps, dev)
    print(f"  all 262,144 rewards: additive {t_r * 1e3:.0f} ms, modes (M=8) {t_m * 1e3:.0f} ms")
    for e, name in ((env, '|A|=8 L=6'), (SequenceDesign(3, 4, device=dev), '|A|=3 L=4')):
        pf = e.policy()
        with torch.no_grad():
            t = timeit(lambda: sample_trajectories(e, pf, 256), a.reps, dev)
        def train_like():
            sample_trajectories(e, pf, 256).log_pf.sum().backward()
        tg = timeit(train_like, a.reps, dev)
        print(f"  {name:10s} batch 256: sample, no grad {256 / t:8.0f} traj/s ({t * 1e3:.1f} ms); "
              f"sample + backward {256 / tg:8.0f} traj/s")

if __name__ == '__main__': main()
