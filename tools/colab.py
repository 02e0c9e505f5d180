"""Put notebooks in the form that Colab's "Run all" runs on a fresh runtime, CPU or GPU. Idempotent.

    python tools/colab.py                    # rewrite every notebook in nbs/ that is not in that form
    python tools/colab.py nbs/00_core.ipynb  # only these
    python tools/colab.py --check            # list the notebooks that would change; exit 1 if any

Everything that names the repository comes from settings.ini (lib_name, git_url, branch, user, repo, and the nbdev
and execnb pins of dev_requirements), so changing it there and rerunning this script updates every notebook.
Each notebook gets:

1. a setup cell, the first code cell (`#| eval: false`, so nbdev_test and the docs never run it; `#| hide`, so
   the docs never show it). Run by Colab, it installs the package where it is not importable, and registers an
   IPython input transformer that runs a `#| gpu` cell as a one-line "skipped" message when there is no CUDA
   device, and a `#| slow` cell likewise unless GFN_SLOW=1. The flagged cells themselves are not touched: on a
   GPU runtime, or with GFN_SLOW=1, the very code that `nbdev_test --flags gpu`/`slow` runs is what runs.
2. an "Open in Colab" badge right after the title cell;
3. a last cell that runs `nbdev_export()` only inside the repository (settings.ini found upward from the working
   directory): everywhere else it would raise, and stop "Run all".
"""
import argparse, hashlib, json, re, shlex, sys
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUP_MARK = '# Colab "Run all" setup, written by tools/colab.py from settings.ini'
BADGE_IMG = 'https://colab.research.google.com/assets/colab-badge.svg'

def settings(root=ROOT):
    cp = ConfigParser(delimiters=['='])
    cp.read(root/'settings.ini', encoding='utf-8')
    return cp['DEFAULT']

def install_args(cfg):
    "What the setup cell pip-installs: the package from git at `branch`, plus the notebooks' nbdev toolchain pins."
    pins = [r for r in shlex.split(cfg.get('dev_requirements', '')) if re.match(r'(nbdev|execnb)\b', r)]
    return [f"{cfg['lib_name']} @ git+{cfg['git_url']}.git@{cfg['branch']}"] + pins

# The part of the setup cell that skips flagged cells (registered on the running IPython; re-running replaces it).
SKIP_SOURCE = '''def _skip_flagged_cell(lines):
    "IPython input transformer: a `#| gpu` or `#| slow` cell that cannot or should not run prints why instead."
    flags = set()
    for line in lines:
        if not line.startswith('#|'): break
        flags.update(line[2:].split())
    if 'gpu' in flags:
        import torch
        if not torch.cuda.is_available(): return ['print("skipped: a #| gpu cell, and there is no CUDA device")\\n']
    if 'slow' in flags and os.environ.get('GFN_SLOW') != '1':
        return ['print("skipped: a #| slow cell (set GFN_SLOW=1 to run it)")\\n']
    return lines

_cleanup = get_ipython().input_transformers_cleanup
_cleanup[:] = [t for t in _cleanup if getattr(t, '__name__', '') != '_skip_flagged_cell'] + [_skip_flagged_cell]'''

def setup_source(cfg):
    args = ', '.join(repr(a) for a in install_args(cfg))
    return f'''#| eval: false
#| hide
{SETUP_MARK}: do not edit.
# Installs the package where it is missing (Colab), then skips `#| gpu` cells when there is no CUDA device and
# `#| slow` cells unless GFN_SLOW=1 (run `%env GFN_SLOW=1` first to run them), as nbdev_test skips them.
import importlib.util, os, subprocess, sys
if importlib.util.find_spec({cfg['lib_name']!r}) is None:
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', {args}], check=True)

''' + SKIP_SOURCE

EXPORT_SOURCE = '''#| hide
# Export the library: only inside the repository (nbdev_export raises where there is no settings.ini, e.g. Colab)
from pathlib import Path
if any((d/'settings.ini').exists() for d in [Path.cwd(), *Path.cwd().parents]):
    import nbdev; nbdev.nbdev_export()'''

def badge_source(cfg, nb_name):
    url = f"https://colab.research.google.com/github/{cfg['user']}/{cfg['repo']}/blob/{cfg['branch']}/{cfg.get('nbs_path', 'nbs')}/{nb_name}"
    return f'[![Open In Colab]({BADGE_IMG})]({url})'

# ---------------------------------------------------------------- notebook editing
def _src(c): return ''.join(c['source']) if isinstance(c['source'], list) else c['source']
def _lines(s): return s.splitlines(keepends=True)

def _cell_id(nb_name, what): return hashlib.sha1(f'{nb_name}:{what}'.encode()).hexdigest()[:8]

def _code(nb_name, what, src):
    return {'cell_type': 'code', 'execution_count': None, 'id': _cell_id(nb_name, what), 'metadata': {},
            'outputs': [], 'source': _lines(src)}

def _md(nb_name, what, src):
    return {'cell_type': 'markdown', 'id': _cell_id(nb_name, what), 'metadata': {}, 'source': _lines(src)}

def is_setup(c):
    "This script's setup cell, or the install cell it replaces (`! [ -e /content ] && pip install ... git+...`)."
    s = _src(c)
    return c['cell_type'] == 'code' and (SETUP_MARK in s or bool(re.search(r'pip install\b.*git\+', s)))

def is_export(c): return c['cell_type'] == 'code' and 'nbdev_export()' in _src(c)

def is_badge(c): return c['cell_type'] == 'markdown' and BADGE_IMG in _src(c)

def _set(c, src):
    if _src(c) != src: c['source'] = _lines(src)
    if c['cell_type'] == 'code': c['outputs'], c['execution_count'] = [], None

def colabify(nb, nb_name, cfg):
    "Bring notebook `nb` (nbformat JSON, changed in place) to the Colab form; returns it."
    cells = nb['cells']
    setup = [c for c in cells if is_setup(c)]
    for c in setup[1:]: cells.remove(c)
    if setup: cells.remove(setup[0]); _set(setup[0], setup_source(cfg))
    cells.insert(0, setup[0] if setup else _code(nb_name, 'colab-setup', setup_source(cfg)))
    badges = [c for c in cells if is_badge(c)]
    for c in badges[1:]: cells.remove(c)
    if badges: _set(badges[0], badge_source(cfg, nb_name))
    else:
        title = next((i for i, c in enumerate(cells) if c['cell_type'] == 'markdown' and re.match(r'\s*#\s', _src(c))), 0)
        cells.insert(title + 1, _md(nb_name, 'colab-badge', badge_source(cfg, nb_name)))
    for c in cells:
        if is_export(c): _set(c, EXPORT_SOURCE)
    return nb

def dumps(nb): return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + '\n'  # as nbdev_clean writes

def notebooks(nbs): return sorted(Path(nbs).glob('*.ipynb'))

def process(paths, cfg, write=True):
    "Names of the notebooks that were (write) or would be changed."
    changed = []
    for p in map(Path, paths):
        old = json.loads(p.read_text(encoding='utf-8'))
        new = colabify(json.loads(json.dumps(old)), p.name, cfg)
        if new != old:  # compared as JSON values: a notebook already in Colab form is left byte for byte
            changed.append(str(p))
            if write: p.write_text(dumps(new), encoding='utf-8')
    return changed

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('nbs', nargs='*', help='notebooks (default: every notebook in nbs/)')
    ap.add_argument('--check', action='store_true', help='change nothing; exit 1 if a notebook is not in Colab form')
    a = ap.parse_args(argv)
    cfg = settings()
    paths = a.nbs or notebooks(ROOT/cfg.get('nbs_path', 'nbs'))
    changed = process(paths, cfg, write=not a.check)
    for p in changed: print(('not in Colab form: ' if a.check else 'rewrote ') + p)
    return 1 if a.check and changed else 0

if __name__ == '__main__': sys.exit(main())
