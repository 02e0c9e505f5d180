"""Timing helpers shared by the benchmark scripts (imported as a sibling module: `from timing import ...`).

Medians of whole-call wall times after one warm-up run, CUDA-synchronised; each result also carries the
process CPU time (`.cpu`), since on a shared machine wall time is inflated by other load.
"""
import statistics, time
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
        _sync(device); t, c = time.perf_counter(), time.process_time()
        out = fn()
        _sync(device)
        if i: runs.append((time.perf_counter() - t, time.process_time() - c))
    return Seconds(statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)), out

def timeit(fn, reps=5, device='cpu') -> Seconds:
    "Median `Seconds` of `reps` runs of `fn()` after one warm-up."
    return timed(fn, reps, device)[0]

def once(fn):
    "`Seconds` of a single run of `fn()` (for one-off set-up costs), and its result."
    t, c = time.perf_counter(), time.process_time(); out = fn()
    return Seconds(time.perf_counter() - t, time.process_time() - c), out

def spread(xs) -> tuple:
    "(min, median, max) of the numbers `xs`: quote the median, the range shows how noisy the machine was."
    xs = list(xs)
    return min(xs), statistics.median(xs), max(xs)

def fmt_spread(xs, fmt='.1f') -> str:
    "`median [min–max]` of the numbers `xs`."
    lo, mid, hi = spread(xs)
    return f"{mid:{fmt}} [{lo:{fmt}}–{hi:{fmt}}]"
