"The command line as a user meets it: the README's examples, what a run reports, progress bars, the comparison's files."
import csv, fcntl, json, os, pty, re, shlex, struct, subprocess, sys, termios, threading
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'PYTHONHASHSEED': '0'}

def readme_command(name: str) -> list:
    "The README's example of command `name` (a line of a ```sh block, backslash continuations joined), as argv."
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / 'README.md').read_text(), re.S)
    cmds = [c for b in blocks for c in b.replace('\\\n', ' ').splitlines() if c.startswith(name + ' ')]
    assert cmds, f"no {name} example in README.md"
    return shlex.split(cmds[0])

def with_out(argv: list, out) -> list:
    "`argv` with its --out value replaced by `out`."
    i = argv.index('--out')
    return argv[:i + 1] + [str(out)] + argv[i + 2:]

def test_readme_compare_example_separates_the_losses(tmp_path):
    "Runs the README's gfn-compare example exactly (about a minute on one CPU thread): its table must say something."
    argv = readme_command('gfn-compare')
    out = tmp_path / 'cmp'
    r = subprocess.run([str(BIN / argv[0]), *with_out(argv, out)[1:]], env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    summary = list(csv.DictReader((out / 'summary.csv').open()))
    means = [float(s['mean']) for s in summary]
    assert len(summary) == 5 and len(set(means)) == len(means), summary       # five losses, five different values
    table = [l for l in r.stdout.splitlines() if l.startswith('| ') and not l.startswith('| loss')]
    printed = [l.split(' | ')[1].split(' ± ')[0] for l in table]
    assert len(set(printed)) == len(printed), table                          # and the printed figures tell them apart
    assert all(s['n_seeds'] == '3' for s in summary) and ' ± ' in table[0]
    # the header names the task constants properly (not `hypergrid , 1000 steps`)
    assert 'hypergrid (ndim=2, height=8): 200 steps, batch 64' in r.stdout and ' , ' not in r.stdout, r.stdout
    # runs.csv: one row per run, the method column named as in summary.csv, one wall column
    header = next(csv.reader((out / 'runs.csv').open()))
    assert header[:2] == ['loss', 'seed'] and header.count('wall') == 1 and 'wall_s' not in header
    assert 'train_loss' in header and 'best_l1' in header and len(header) == len(set(header))
    import matplotlib.image as mpimg
    assert mpimg.imread(out / 'convergence.png').shape[:2] == (700, 1200)     # twice the old 600×350

def test_train_reports_last_and_best(tmp_path):
    out = tmp_path / 'run'
    r = subprocess.run([str(BIN / 'gfn-train'), '--task-args', 'ndim=2,height=6', '--steps', '60', '--hidden', '32',
                        '--eval-every', '20', '--device', 'cpu', '--out', str(out)], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout.strip().splitlines()[-1])
    assert printed == json.loads((out / 'final.json').read_text())
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert printed['l1'] == rows[-1]['l1'] and printed['best_l1'] == min(r['l1'] for r in rows)
    assert printed['best_l1_step'] == min((r['l1'], r['step']) for r in rows)[1]
    assert r.stderr == ''                        # not a terminal: no progress bar, nothing on stderr

def test_progress_bar_on_a_terminal(tmp_path):
    "On a terminal the run shows a tqdm bar with the latest metrics."
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 120, 0, 0))   # a 120-column terminal
    chunks = []
    def read():
        while True:
            try: b = os.read(master, 4096)
            except OSError: return
            if not b: return
            chunks.append(b)
    t = threading.Thread(target=read, daemon=True); t.start()
    p = subprocess.Popen([str(BIN / 'gfn-train'), '--task-args', 'ndim=2,height=6', '--steps', '40', '--hidden', '16',
                          '--eval-every', '20', '--device', 'cpu'], env=ENV, stdout=subprocess.PIPE, stderr=slave)
    p.communicate(timeout=300); os.close(slave); t.join(10); os.close(master)
    err = b''.join(chunks).decode(errors='replace')
    assert p.returncode == 0 and 'tb seed 0' in err and '40/40' in err and 'l1 ' in err, err

# ---- issue 10: the options are generated from TrainConfig and the constructors' signatures

def test_options_are_generated_from_the_config():
    "Every field of TrainConfig is an option of both commands, with TrainConfig's default and the field's comment as help."
    from dataclasses import fields, MISSING
    from fastcore.docments import docments
    from gfn_nbdev.training import TrainConfig
    from gfn_nbdev.cli import train_parser, compare_parser
    docs = docments(TrainConfig)
    for parser, own in ((train_parser(), ()), (compare_parser(), ('loss', 'seed', 'out'))):
        o, helps = vars(parser.parse_args([])), {}
        for a in parser._actions: helps.setdefault(a.dest, a.help)           # --progress, then its alias --quiet
        for f in fields(TrainConfig):
            if f.name in own: continue
            dest = f.name[:-3] + '_args' if f.name.endswith('_kw') else f.name
            assert o[dest] == ('' if f.default is MISSING else f.default), (parser.prog, f.name, o[dest])
            assert helps[dest].startswith(docs[f.name].replace('%', '%%')), (parser.prog, f.name, helps[dest])

def run_help(*argv) -> str:
    r = subprocess.run([str(BIN / argv[0]), *argv[1:], '--help'], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == '', r.stderr
    return ' '.join(r.stdout.split())

def test_demo_help_shows_the_demo_settings():
    h = run_help('gfn-demo')
    for s in ('usage: gfn-demo', 'training steps, one batch each (default: 400)', '(default: runs/demo)', '(default: 128)',
              'hypergrid takes ndim=2, height=8, R0=0.1, R1=0.5, R2=2.0 (default: ndim=2,height=16,R0=0.01)'):
        assert s in h, (s, h)

def test_help_lists_the_arguments_of_the_named_task_and_loss():
    h = run_help('gfn-train', '--task', 'phylo', '--loss', 'subtb')
    assert "phylo takes alignment=None, n=7, length=25" in h and "subtb takes lam=0.9" in h, h
    assert 'training steps, one batch each (default: 1000)' in h and '(default: 0)' in h     # TrainConfig's steps, ckpt_every
