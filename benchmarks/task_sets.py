"""Set task timings: exact p_T on the small universe, mode threshold and class metrics at the paper's size,
sampling throughput at batch 256 for both sizes (default 2x256 MLP policy), and the exact p_T of single sets at the
paper's size (`set_log_pt`: the DP over the 2^16 subsets behind `mc_set_l1`, the `preset='paper'` metric).

    python benchmarks/task_sets.py [--threads 1] [--device cpu] [--reps 5] [--class-samples 100000]
        [--seed 0] [--quick] [--out report.txt]

Medians over `reps` timed runs after one warm-up; the intra-op thread count is printed.
"""
import torch
from timing import once, parser, setup, timeit
from gfn_nbdev.core import sample_trajectories
from gfn_nbdev.exact import exact_log_pt, state_graph
from gfn_nbdev.tasks.sets import (SetGeneration, OptimalSetPolicy, sampled_class_l1, set_log_partition, set_log_pt,
                                  sample_pi_sets)

def main():
    p = parser(__doc__, quick=dict(reps=1, class_samples=10_000), device=True, reps=5)
    p.add_argument('--class-samples', type=int, default=100_000, help='samples of sampled_class_l1')
    a = setup(p)
    dev = torch.device(a.device)
    print(f"set generation, device {a.device}, torch {torch.__version__}, intra-op threads {torch.get_num_threads()}")
    small = SetGeneration(12, 6, device=dev)
    pf = small.policy()
    t_graph, _ = once(lambda: state_graph(small))
    with torch.no_grad():
        t_dp = timeit(lambda: exact_log_pt(small, pf), a.reps, dev)
    print(f"  small |U|=12 |S|=6 ({small.n_states():,} states, 924 sets): state graph {t_graph * 1e3:.1f} ms (once), "
          f"exact p_T {t_dp * 1e3:.1f} ms (2x256 MLP, no grad)")
    big = SetGeneration(device=dev)
    t_mode, thr = once(big.mode_threshold)
    t_z, lz = once(lambda: set_log_partition(big))
    print(f"  paper |U|=32 |S|=16: exact top-1% mode threshold {thr:.4f} in {t_mode:.2f} s; exact log Z {lz:.4f} in {t_z * 1e3:.1f} ms")
    for env, name in ((small, 'small |U|=12 |S|=6'), (big, 'paper |U|=32 |S|=16')):
        pf = env.policy()
        with torch.no_grad():
            t = timeit(lambda: sample_trajectories(env, pf, 256), a.reps, dev)
        def train_like():
            sample_trajectories(env, pf, 256).log_pf.sum().backward()
        tg = timeit(train_like, a.reps, dev)
        print(f"  {name:22s} batch 256: sample, no grad {256 / t:8.0f} traj/s ({t * 1e3:.1f} ms); "
              f"sample + backward {256 / tg:8.0f} traj/s")
    big3 = SetGeneration(n_levels=3, device=dev)
    pf3 = big3.policy()
    t_cl, r = once(lambda: sampled_class_l1(big3, pf3, n=a.class_samples))
    print(f"  paper, n_levels=3 ({r['n_classes']} classes): sampled_class_l1 with n={a.class_samples:,} in {t_cl:.1f} s "
          f"(untrained: l1 {r['l1']:.3f} ± {r['se']:.3f}, floor {r['floor']:.4f})")
    opt = OptimalSetPolicy(big3)
    with torch.no_grad():
        t = timeit(lambda: sample_trajectories(big3, opt, 256), max(1, a.reps // 2), dev)
    print(f"  paper, closed-form optimal policy: {256 / t:.0f} traj/s at batch 256")
    pf, xs = big.policy(), sample_pi_sets(big, 4, seed=0)
    t = timeit(lambda: set_log_pt(big, pf, xs), max(1, a.reps // 2), dev)
    print(f"  paper, exact p_T of one set (2^16 subsets, 2x256 MLP): {t / 4:.2f} s; "
          f"preset='paper' metrics (64 sets): about {16 * t:.0f} s")

if __name__ == '__main__': main()
