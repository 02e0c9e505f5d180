"""Colab's "Run all" on a fresh runtime, here: the package is built as a wheel and installed into a fresh venv in a
temporary folder outside the repository, and every notebook of nbs/, copied alone into a folder of its own, runs top
to bottom on a Jupyter kernel of that venv, with no cell skipped by anyone but the notebook itself (its setup
cell, written by tools/colab.py, makes `#| gpu` cells skip without CUDA and `#| slow` cells skip unless
GFN_SLOW=1; its export cell does nothing outside the repository).

Several minutes (the whole notebook suite on 2 cores, plus about a minute for the wheel and the venv). It runs in CI
(CI=true) and by default; GFN_SKIP_COLAB=1 skips it on a developer's machine. Torch is not reinstalled: the venv
sees the running interpreter's torch (and what torch needs) through a .pth file, as a Colab runtime comes with
torch preinstalled; everything else (the wheel's requirements, the nbdev pins, the kernel) is pip-installed."""
import functools, json, os, shutil, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'tools'))
import colab  # noqa: E402  (tools/colab.py)

IN_CI = os.environ.get('CI', '').lower() in ('1', 'true', 'yes')
SKIP = not IN_CI and os.environ.get('GFN_SKIP_COLAB', '') not in ('', '0')
CFG = colab.settings()
NOTEBOOKS = colab.notebooks(ROOT/CFG.get('nbs_path', 'nbs'))
N_WORKERS = 2
TIMEOUT = 900  # seconds a cell may take (the slowest chapters' quick settings take well under a minute)

def _flags(cell):
    src = ''.join(cell['source'])
    return {w for line in src.splitlines() if line.startswith('#|') for w in line[2:].split()}

@functools.lru_cache(maxsize=None)
def _pending():
    "Notebooks not yet in Colab form (tools/colab.py would change them)."
    return {Path(p).name for p in colab.process(NOTEBOOKS, CFG, write=False)}

# ---------------------------------------------------------------- cheap checks (no venv)
def test_colab_form_is_idempotent(tmp_path):
    "tools/colab.py on a copy of every notebook: a second run changes nothing; it keeps cells it does not own."
    for p in NOTEBOOKS: shutil.copy(p, tmp_path/p.name)
    copies = sorted(tmp_path.glob('*.ipynb'))
    colab.process(copies, CFG)
    assert colab.process(copies, CFG) == []
    for p in copies:
        old, new = (json.loads(f.read_text()) for f in (ROOT/'nbs'/p.name, p))
        mine = lambda c: colab.is_setup(c) or colab.is_badge(c) or colab.is_export(c)
        assert [c for c in old['cells'] if not mine(c)] == [c for c in new['cells'] if not mine(c)], p.name
        assert colab.is_setup(new['cells'][0]) and sum(map(colab.is_setup, new['cells'])) == 1
        assert colab.install_args(CFG)[0] in ''.join(new['cells'][0]['source'])

def test_notebooks_in_colab_form():
    "Every notebook is as tools/colab.py writes it (from settings.ini): run `python tools/colab.py` if not."
    pending = _pending()
    if pending and not IN_CI: pytest.skip(f'not yet in Colab form (python tools/colab.py): {sorted(pending)}')
    assert not pending, f'run `python tools/colab.py`: {sorted(pending)}'

def test_skip_transformer():
    "The setup cell's transformer: gpu cells skip without CUDA, slow cells unless GFN_SLOW=1, others untouched."
    import torch
    class IP: input_transformers_cleanup = []
    for _ in range(2): exec(colab.SKIP_SOURCE, {'get_ipython': lambda: IP, 'os': os})  # re-running registers it once
    assert len(IP.input_transformers_cleanup) == 1
    t = IP.input_transformers_cleanup[0]
    gpu = ['#| gpu\n', "x = torch.ones(1, device='cuda')\n"]
    assert t(gpu) == gpu if torch.cuda.is_available() else t(gpu) == ['print("skipped: a #| gpu cell, and there is no CUDA device")\n']
    old = os.environ.pop('GFN_SLOW', None)
    try:
        assert 'GFN_SLOW=1' in t(['#| slow\n', 'train()\n'])[0]
        os.environ['GFN_SLOW'] = '1'
        assert t(['#| slow\n', 'train()\n']) == ['#| slow\n', 'train()\n']
    finally:
        os.environ.pop('GFN_SLOW', None)
        if old is not None: os.environ['GFN_SLOW'] = old
    assert t(['#| export\n', 'x = 1\n']) == ['#| export\n', 'x = 1\n'] and t(['y = 2  #| gpu\n']) == ['y = 2  #| gpu\n']
    assert colab.SKIP_SOURCE in colab.setup_source(CFG)

# ---------------------------------------------------------------- the real run
def _share_torch(site, shared):
    """Make the venv see this interpreter's torch and its requirements (links in `shared`, named by a .pth file)."""
    from importlib.metadata import distribution
    from packaging.requirements import Requirement
    todo, seen = ['torch'], set()
    while todo:
        d = distribution(todo.pop())
        name = d.metadata['Name'].lower().replace('_', '-')
        if name in seen: continue
        seen.add(name)
        for top in {f.parts[0] for f in d.files or [] if f.parts[0] != '..'}:
            src, dst = Path(d.locate_file(top)), shared/top
            if src.exists() and not dst.exists(): dst.symlink_to(src)
        todo += [r.name for r in map(Requirement, d.requires or []) if r.marker is None or r.marker.evaluate({'extra': ''})]
    (site/'_shared_torch.pth').write_text(f'{shared}\n')
    return sorted(seen)

RUNNER = r'''
import json, sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
nb_path, timeout = Path(sys.argv[1]), int(sys.argv[2])
nb = nbformat.read(nb_path, as_version=4)
t, err = time.time(), None
try: NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(nb_path.parent)}}).execute()
except CellExecutionError as e: err = str(e)[-4000:]
nbformat.write(nb, nb_path.with_suffix('.out.ipynb'))
print(json.dumps({'error': err, 'seconds': round(time.time() - t, 1)}))
'''

def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f'{cmd} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    return r

@pytest.fixture(scope='module')
def runs():
    "{notebook name: (result, executed notebook)} after running every notebook in the fresh venv."
    if SKIP: pytest.skip('GFN_SKIP_COLAB is set (CI=true runs it regardless)')
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix='gfn-colab-') as tmp:
        tmp = Path(tmp)
        src = tmp/'src'  # build from a copy: the checkout gets no build/ or *.egg-info
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns('.git', '.venv', '_docs', '_proc', 'nbs', 'runs', '.cache',
                                                                 'build', 'dist', '*.egg-info', '__pycache__', '.pytest_cache'))
        _run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '-w', str(tmp/'dist'), str(src)])
        wheel = next((tmp/'dist').glob('*.whl'))
        venv = tmp/'venv'
        _run([sys.executable, '-m', 'venv', str(venv)])
        py = venv/'bin'/'python'
        site = Path(_run([str(py), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])']).stdout.strip())
        (tmp/'shared').mkdir()
        _share_torch(site, tmp/'shared')
        _run([str(py), '-m', 'pip', 'install', '-q', str(wheel), *colab.install_args(CFG)[1:], 'nbclient', 'ipykernel'],
             timeout=1200)
        t1 = time.time()
        env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'PYTHONPATH', 'GFN_SLOW', 'MPLBACKEND')}
        env.update(PATH=f"{venv/'bin'}:{env.get('PATH', '')}", OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
                   GFN_RAW_URL=src.as_uri() + '/')   # the experiments read committed results by URL (GitHub on Colab)
        (tmp/'runner.py').write_text(RUNNER)
        def one(p):
            d = tmp/'run'/p.stem
            d.mkdir(parents=True)
            shutil.copy(p, d/p.name)
            r = subprocess.run([str(py), str(tmp/'runner.py'), str(d/p.name), str(TIMEOUT)], cwd=d, env=env,
                               capture_output=True, text=True, timeout=3 * 3600)
            try: res = json.loads(r.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError): res = {'error': f'runner failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}'}
            out = d/f'{p.stem}.out.ipynb'
            return p.name, (res, json.loads(out.read_text()) if out.exists() else None)
        todo = [p for p in NOTEBOOKS if p.name not in _pending()]  # the others fail (CI) or skip in test_run_all
        with ThreadPoolExecutor(N_WORKERS) as ex: out = dict(ex.map(one, todo))
        print(f'\nColab run: wheel and venv {t1 - t0:.0f}s, {len(out)} notebooks {time.time() - t1:.0f}s ({N_WORKERS} at a time): '
              + ', '.join(f"{k} {v[0].get('seconds', '?')}s" for k, v in out.items()))
        yield out

@pytest.mark.parametrize('name', [p.name for p in NOTEBOOKS])
def test_run_all(runs, name):
    "The notebook runs top to bottom outside the repo; its gpu cells (no CUDA here) and slow cells say they skipped."
    if name in _pending():
        if IN_CI: pytest.fail(f'{name} is not in Colab form: run `python tools/colab.py`')
        pytest.skip(f'{name} is not in Colab form yet (python tools/colab.py)')
    res, nb = runs[name]
    assert res.get('error') is None, f"{name}: {res['error']}"
    import torch
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        text = ''.join(''.join(o.get('text', '')) for o in c.get('outputs', []))
        if 'gpu' in _flags(c) and not torch.cuda.is_available(): assert 'skipped: a #| gpu cell' in text, c['source'][:3]
        elif 'slow' in _flags(c): assert 'skipped: a #| slow cell' in text, c['source'][:3]
