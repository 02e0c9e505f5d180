#!/usr/bin/env bash
# The GPU checks of the scaling work, as one command for a machine with CUDA (run from the repository root):
#   bash benchmarks/gpu_check.sh [OUTDIR]        # default OUTDIR benchmarks/results/gpu
# 1. every notebook's `#| gpu` cells (nbdev_test --flags gpu), 2. training throughput per loss and batch size on
# cuda, up to 16k trajectories a step (benchmarks/train_speed.py), 3. the parts of a Renyi/Tsallis step against TB's on
# the same batches (benchmarks/step_parts.py) and the sampler's draw against torch.multinomial's (benchmarks/draw_ab.py),
# 4. with two or more GPUs, 1 vs 2 NCCL processes (benchmarks/scaling.py).
# Needs python3 with CUDA torch; nbdev 2.4.14, fastcore and execnb (pinned in settings.ini) are installed from wheels
# in .whl/ when the machine lacks them and has no index (pip download them elsewhere).
# About 5-8 minutes on one H100/H200; each step writes its report to OUTDIR and a failure does not stop the next.
set -u
OUTDIR=${1:-benchmarks/results/gpu}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ] && ! python3 -c 'import nbdev' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
python3 - <<'PY' | tee "$OUTDIR/device.txt"
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s):",
      ', '.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
PY
python3 -c "from nbdev.test import nbdev_test; nbdev_test(flags='gpu', n_workers=8, timing=True)" 2>&1 | tee "$OUTDIR/nbdev_test_gpu.txt"
(cd benchmarks && python3 train_speed.py --device cuda --losses tb,rev_kl,renyi,tsallis --batches 64,256,1024,4096,16384 \
   --steps 10 --warmup 20 --out "../$OUTDIR/train_speed_cuda.txt")
python3 benchmarks/step_parts.py --device cuda --out "$OUTDIR/step_parts_cuda.txt" > /dev/null   # the Renyi/Tsallis step's parts
python3 benchmarks/draw_ab.py --device cuda --rounds 10 --out "$OUTDIR/draw_ab_cuda.txt" > /dev/null    # the draw without multinomial's checks
if [ "$(python3 -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  python3 benchmarks/scaling.py --device cuda --backend nccl --procs 1,2 --batch 1024 2>&1 | tee "$OUTDIR/scaling_nccl.txt"
else
  echo "one CUDA device: no multi-process NCCL run" | tee "$OUTDIR/scaling_nccl.txt"
fi
