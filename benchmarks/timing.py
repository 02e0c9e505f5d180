"""The helper every benchmark script shares (imported as a sibling module: `from timing import ...`).

Timing: medians of whole-call wall times after one warm-up run, CUDA-synchronised; each result also carries the
process CPU time (`.cpu`), since on a shared machine wall time is inflated by other load. The command line:
`parser` makes the argument parser with the common flags (--threads, --seed, --quick, --out) and `setup` parses
it and sets the threads and the seed, so that every benchmark reads and behaves alike.
"""
import argparse, statistics, sys, time
from pathlib import Path
from typing import Optional
import torch

class Seconds(float):
    "Wall seconds, with the process CPU seconds of the same runs in `.cpu`."
    def __new__(cls, wall, cpu):
        s = super().__new__(cls, wall); s.cpu = cpu; return s

def _sync(device):
    if torch.device(device).type == 'cuda': torch.cuda.synchronize()

def timed(fn, reps=5, device='cpu'):
    "Median `Seconds` of `reps` runs of `fn()` after one warm-up, and the last result."
    out, runs = None, []
    for i in range(reps + 1):
        with stopwatch(device) as sw: out = fn()
        if i: runs.append(sw.seconds)
    return Seconds(statistics.median(runs), statistics.median(r.cpu for r in runs)), out

def timeit(fn, reps=5, device='cpu') -> Seconds:
    "Median `Seconds` of `reps` runs of `fn()` after one warm-up."
    return timed(fn, reps, device)[0]

def once(fn, device='cpu'):
    "`Seconds` of a single run of `fn()` (for one-off set-up costs), and its result."
    with stopwatch(device) as sw: out = fn()
    return sw.seconds, out

def spread(xs) -> tuple:
    "(min, median, max) of the numbers `xs`: quote the median, the range shows how noisy the machine was."
    xs = list(xs)
    return min(xs), statistics.median(xs), max(xs)

def fmt_spread(xs, fmt='.1f') -> str:
    "`median [min–max]` of the numbers `xs`."
    lo, mid, hi = spread(xs)
    return f"{mid:{fmt}} [{lo:{fmt}}–{hi:{fmt}}]"

class stopwatch:
    "Context manager timing its block (CUDA-synchronised): afterwards `.seconds` is its `Seconds` (wall; CPU in `.cpu`)."
    def __init__(self, device='cpu'): self.device, self.seconds = device, None
    def __enter__(self):
        _sync(self.device); self._t, self._c = time.perf_counter(), time.process_time()
        return self
    def __exit__(self, *exc):
        _sync(self.device)
        self.seconds = Seconds(time.perf_counter() - self._t, time.process_time() - self._c)

# --- the command line every benchmark shares ------------------------------------------------------------------

def parser(doc: str, quick: dict, out: Optional[str] = None, report: bool = True, device: bool = False,
           reps: Optional[int] = None, malloc: bool = False) -> argparse.ArgumentParser:
    """The benchmark's argument parser with the shared flags: `--threads` (intra-op threads, 1), `--seed` (torch's
    global seed, 0), `--quick` (the small settings `quick`, a smoke test of a few seconds) and `--out` (default `out`:
    where the results go; with `report`, a file that receives a copy of the printed report). `device` adds `--device`
    (cpu), `reps` adds `--reps` with that default, `malloc` adds `--default-malloc` (without it `setup` fixes glibc's
    malloc thresholds with `tune_malloc`, as gfn-train does; `a.malloc_tuned` says whether they were fixed). The
    script adds its own flags, then calls `setup`."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0], epilog='\n'.join(doc.splitlines()[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int, default=1, help='intra-op threads (torch.set_num_threads); default 1')
    p.add_argument('--seed', type=int, default=0, help="torch's global seed; default 0")
    p.add_argument('--quick', action='store_true',
                   help='small settings, a smoke test: ' + ', '.join(f"--{k.replace('_', '-')} {v}" for k, v in quick.items()))
    p.add_argument('--out', default=out, help='also write the printed report to this file' if report else
                   f'where the results are written (default {out}; --quick: nowhere unless given)')
    if device: p.add_argument('--device', default='cpu', help='torch device; default cpu')
    if reps is not None: p.add_argument('--reps', type=int, default=reps, help=f'timed runs after one warm-up; default {reps}')
    if malloc: p.add_argument('--default-malloc', action='store_true',
                              help="leave glibc's malloc thresholds alone (default: tune_malloc, as gfn-train)")
    p.quick_settings, p.report, p.malloc = dict(quick), report, malloc
    return p

class _Tee:
    "Write to the terminal and to a file."
    def __init__(self, stream, f): self.stream, self.f = stream, f
    def write(self, s): self.stream.write(s); self.f.write(s); return len(s)
    def flush(self): self.stream.flush(); self.f.flush()
    def __getattr__(self, k): return getattr(self.stream, k)

def setup(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse the command line (with `--quick` the small settings replace the defaults; flags given explicitly still
    win, and results are written only to an `--out` given explicitly), then set torch's intra-op threads and seed,
    fix malloc's thresholds if the parser has `malloc`, and copy stdout to `--out` for a report file."""
    a = p.parse_args(argv)
    if a.quick:
        p.set_defaults(**p.quick_settings, **({} if p.report else dict(out=None)))
        a = p.parse_args(argv)
    if a.threads < 1: p.error(f"--threads must be >= 1, got {a.threads}")
    torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
    if p.malloc:
        from gfn_nbdev.training import tune_malloc
        a.malloc_tuned = False if a.default_malloc else tune_malloc()
    if p.report and a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        sys.stdout = _Tee(sys.stdout, open(a.out, 'w'))
    return a
