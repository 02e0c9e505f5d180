"""DAG structure-learning task: time of the exact p_T by the generic DP, and sampling throughput.

    python benchmarks/task_dags.py [--d 5] [--batch 256] [--threads 1] [--device cpu] [--reps 5]
        [--seed 0] [--quick] [--out report.txt]

(a) exact p_T over all DAGs on d nodes (29,281 for d = 5): the first call enumerates the DAGs and builds the state
    graph (cached on the env), later calls run only the policy on every state and the DP; both are reported.
(b) trajectories/s sampled at the given batch, no grad, for the default policy (2x256 MLP) and the GIN-style one.
Medians over `reps` runs after one warm-up. No timed assertions: it prints figures.
"""
import torch
from timing import once, parser, setup, timed
from gfn_nbdev.core import sample_trajectories
from gfn_nbdev.exact import exact_log_pt, state_graph
from gfn_nbdev.tasks.dags import DAGEnv

def main():
    p = parser(__doc__, quick=dict(d=3, batch=32, reps=1), device=True, reps=5)
    p.add_argument('--d', type=int, default=5); p.add_argument('--batch', type=int, default=256)
    a = setup(p)
    device = torch.device(a.device)
    print(f"DAG task d={a.d}, BGe, device {a.device}, torch {torch.__version__}, intra-op threads {torch.get_num_threads()}")
    env = DAGEnv(a.d, device=device)
    t_graph, g = once(lambda: state_graph(env))
    print(f"  state graph (enumerate {len(g.states)} DAGs, {len(g.parent)} edges, levels): {t_graph:.2f} s (once per env)")
    for kind in ('mlp', 'gnn'):
        pf = env.policy(kind=kind)                                        # hidden 256, 2 layers
        with torch.no_grad():
            t, lp = timed(lambda: exact_log_pt(env, pf), a.reps, device)
        print(f"  exact p_T, {kind} 2x256: {t:.3f} s (DP on the cached graph; sum p_T = {lp.exp().sum().item():.6f})")
    for kind in ('mlp', 'gnn'):
        pf = env.policy(kind=kind)
        with torch.no_grad():
            t, tr = timed(lambda: sample_trajectories(env, pf, a.batch), a.reps, device)
        print(f"  sampling, {kind} 2x256, batch {a.batch}, no grad: {t * 1e3:.1f} ms/batch, {a.batch / t:.0f} trajectories/s "
              f"(mean length {tr.lengths.float().mean():.1f})")

if __name__ == '__main__': main()
