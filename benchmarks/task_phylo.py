"""Phylogenetics task timings: enumeration and exact p_T at n = 5 and n = 7 (the paper's size), and sampling
throughput at batch 256 with the default policy (2-layer GIN, width 64).

    python benchmarks/task_phylo.py [--threads 1] [--device cpu] [--reps 5] [--exact-n 5,7] [--sample-n 5,7,9]
        [--seed 0] [--quick] [--out report.txt]

Medians over `reps` timed runs after one warm-up; the intra-op thread count is printed. Wall time
and process CPU time are both printed: on a loaded machine the CPU time is the figure to compare.
"""
import torch
import timing
from timing import parser, setup
from gfn_nbdev.core import sample_trajectories
from gfn_nbdev.exact import exact_log_pt, state_graph
from gfn_nbdev.tasks.phylo import Phylogenetics

class T(timing.Seconds):
    "Printed with the process CPU time beside the wall time (a shared machine inflates wall time)."
    def __format__(self, spec): return f"{float(self):{spec}} s (cpu {self.cpu:{spec}} s)"

def timeit(fn, reps, device): t = timing.timeit(fn, reps, device); return T(t, t.cpu)
def once(fn): t, out = timing.once(fn); return T(t, t.cpu), out

def main():
    p = parser(__doc__, quick=dict(reps=1, exact_n='5', sample_n='5'), device=True, reps=5)
    p.add_argument('--exact-n', default='5,7', help='species counts for enumeration and exact p_T (at most 7)')
    p.add_argument('--sample-n', default='5,7,9', help='species counts for the sampling throughput')
    a = setup(p)
    dev = torch.device(a.device)
    print(f"phylogenetics (JC69, L=25 sites), device {a.device}, torch {torch.__version__}, "
          f"intra-op threads {torch.get_num_threads()}")
    for n in (int(n) for n in a.exact_n.split(',')):
        env = Phylogenetics(n=n, device=dev)
        pf = env.policy()
        t_enum, states = once(env.all_states)
        t_graph, g = once(lambda: state_graph(env))
        with torch.no_grad(): t_dp = timeit(lambda: exact_log_pt(env, pf), a.reps, dev)
        t_grad = timeit(lambda: exact_log_pt(env, pf).exp().sum().backward(), max(1, a.reps // 2), dev)
        print(f"  n={n}: {len(env.terminal_states()):,} trees, {len(states):,} states, {len(g.parent):,} edges\n"
              f"    enumeration {t_enum:.2f}, state graph {t_graph:.2f} (once)\n"
              f"    exact p_T {t_dp:.2f} no grad; {t_grad:.2f} with backward")
    for n in (int(n) for n in a.sample_n.split(',')):
        env = Phylogenetics(n=n, device=dev)
        pf = env.policy()
        with torch.no_grad(): t = timeit(lambda: sample_trajectories(env, pf, 256), a.reps, dev)
        tg = timeit(lambda: sample_trajectories(env, pf, 256).log_pf.sum().backward(), a.reps, dev)
        print(f"  n={n} batch 256: sample, no grad {256 / t:6.0f} traj/s wall, {256 / t.cpu:6.0f} per cpu-s; "
              f"sample + backward {256 / tg:6.0f} traj/s wall, {256 / tg.cpu:6.0f} per cpu-s")

if __name__ == '__main__': main()
