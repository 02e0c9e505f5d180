"Training reliability: exact resume after SIGKILL / SIGINT / SIGTERM, safe checkpoints, one run per folder, CLI errors, strict JSON."
import json, math, os, re, signal, subprocess, sys, time
from pathlib import Path
import pytest
import torch
from gfn_nbdev.evaluation import l1, tv, jsd, mean_abs_error, exact_metrics, ModeTracker
from gfn_nbdev.exact import TablePolicy
from gfn_nbdev.core import diamond_env
from gfn_nbdev.tasks.hypergrid import HyperGrid
from gfn_nbdev.training import TrainConfig, train, CKPT_FORMAT
from gfn_nbdev.cli import train_main, compare_main

BIN = Path(sys.executable).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONHASHSEED': '0'}
STEPS = 120
ARGS = ['--task-args', 'ndim=2,height=6', '--steps', str(STEPS), '--batch-size', '32', '--hidden', '32',
        '--eval-every', '20', '--seed', '3', '--device', 'cpu', '--quiet']

def cli(name, *args, **kw):
    return subprocess.run([str(BIN / name), *args], env=ENV, capture_output=True, text=True, timeout=300, **kw)

def lines(out): return (Path(out) / 'metrics.jsonl').read_text().splitlines()

def rows(out):
    "metrics.jsonl without the wall-clock column (the only field allowed to differ)."
    return [{k: v for k, v in json.loads(l).items() if k != 'wall'} for l in lines(out)]

def wait_for(cond, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout and not cond(): time.sleep(0.05)

def in_process(main, args, capsys):
    "Run an entry point in this process; its exit status and stderr."
    with pytest.raises(SystemExit) as e: main(args)
    return e.value.code, capsys.readouterr().err

@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "The uninterrupted run of each loss, computed once per module."
    cache = {}
    def get(loss):
        if loss not in cache:
            a = tmp_path_factory.mktemp(f'ref-{loss}')
            r = cli('gfn-train', *ARGS, '--ckpt-every', '20', '--loss', loss, '--out', str(a))
            assert r.returncode == 0, r.stderr
            cache[loss] = a
        return cache[loss]
    return get

@pytest.mark.parametrize('sig', ['SIGKILL', 'SIGINT', 'SIGTERM'])
@pytest.mark.parametrize('loss', ['tb', 'renyi'])
def test_resume_after_a_signal_is_bit_identical(tmp_path, reference, loss, sig):
    a, b, signum = reference(loss), tmp_path / 'b', getattr(signal, sig)
    # SIGKILL gives no chance to clean up: the resume starts from the last periodic checkpoint. SIGINT and SIGTERM:
    # no periodic checkpoints at all, so the resume starts from the one written where the signal stopped the run.
    p = subprocess.Popen([str(BIN / 'gfn-train'), *ARGS, '--ckpt-every', '20' if sig == 'SIGKILL' else '0',
                          '--loss', loss, '--out', str(b)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (b / 'metrics.jsonl').exists() and len(lines(b)) >= 3
             and (sig != 'SIGKILL' or (b / 'checkpoint.pt').exists()))
    p.send_signal(signum); out, err = p.communicate(timeout=120)
    if sig == 'SIGKILL': assert p.returncode == -signal.SIGKILL
    else:
        assert p.returncode == 128 + signum, (p.returncode, err)                 # 130 / 143
        assert 'Traceback' not in err and len(err.strip().splitlines()) == 1, err
        m = re.fullmatch(rf"gfn-train: interrupted by {sig} at step (\d+); checkpoint saved in {re.escape(str(b))} "
                         r"\(continue with --resume\)", err.strip())
        assert m, err
        ck = torch.load(b / 'checkpoint.pt', weights_only=True)
        assert ck['step'] == int(m[1]) and ck['wall'] >= json.loads(lines(b)[-1])['wall']
    assert len(lines(b)) < len(rows(a)), 'the run finished before it could be stopped: make it longer'
    r = cli('gfn-train', *ARGS, '--loss', loss, '--out', str(b), '--resume')
    assert r.returncode == 0, r.stderr
    assert rows(a) == rows(b)                      # every metric, every evaluation, bit for bit
    assert json.loads((a / 'final.json').read_text())['l1'] == json.loads((b / 'final.json').read_text())['l1']
    walls = [json.loads(l)['wall'] for l in lines(b)]
    assert walls == sorted(walls), walls           # the wall clock continues across the resume

class Payload:
    "A pickle that creates a folder when unpickled: what a malicious checkpoint would do with worse code."
    def __init__(self, path): self.path = path
    def __reduce__(self): return (os.mkdir, (self.path,))

def test_crafted_checkpoint_runs_no_code(tmp_path):
    out, marker = tmp_path / 'evil', tmp_path / 'marker'
    out.mkdir()
    torch.save(dict(format=CKPT_FORMAT, step=0, x=Payload(str(marker))), out / 'checkpoint.pt')
    r = cli('gfn-train', '--steps', '5', '--quiet', '--out', str(out), '--resume')
    assert r.returncode == 2 and not marker.exists(), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and 'Traceback' not in r.stderr
    assert 'was not loaded (nothing in it was run)' in r.stderr and 'mkdir' in r.stderr, r.stderr
    torch.load(out / 'checkpoint.pt', weights_only=False)      # loaded as before (weights_only=False), the payload runs
    assert marker.exists()

def test_old_checkpoint_format_is_a_clear_error(tmp_path):
    import numpy as np
    out = tmp_path / 'v1'; out.mkdir()
    torch.save(dict(format='gfn_nbdev-checkpoint-v1', rng=dict(numpy=np.random.get_state())), out / 'checkpoint.pt')
    r = cli('gfn-train', '--steps', '5', '--quiet', '--out', str(out), '--resume')
    assert r.returncode == 2 and 'format v1' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

def test_checkpoint_is_plain_data(tmp_path):
    out = tmp_path / 'p'
    assert cli('gfn-train', *ARGS, '--steps', '20', '--out', str(out)).returncode == 0
    ck = torch.load(out / 'checkpoint.pt', weights_only=True)           # would raise on any pickled object
    assert ck['format'] == CKPT_FORMAT and ck['step'] == 20 and ck['wall'] > 0
    assert [p.name for p in out.iterdir() if p.name.endswith('.tmp')] == []   # no temporary left behind

def test_one_run_per_folder(tmp_path):
    out = tmp_path / 'held'
    p = subprocess.Popen([str(BIN / 'gfn-train'), *ARGS, '--steps', '100000', '--ckpt-every', '0', '--out', str(out)],
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (out / 'metrics.jsonl').exists() and len(lines(out)) >= 1)
        for extra in ([], ['--resume']):
            r = cli('gfn-train', *ARGS, '--out', str(out), *extra)
            assert r.returncode == 2 and f"{out} is in use by another run (process {p.pid})" in r.stderr, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1
    finally:
        p.send_signal(signal.SIGTERM); _, err = p.communicate(timeout=120)
    assert p.returncode == 143 and 'interrupted by SIGTERM at step' in err, err
    r = cli('gfn-train', *ARGS, '--out', str(out))          # a partial run, and no --resume: refused
    assert r.returncode == 2, r.stderr
    assert f"{out} already holds a run (checkpoint.pt, metrics.jsonl): continue it with --resume" in r.stderr, r.stderr

def test_compare_runs_are_checkpointed_and_resumable(tmp_path, capsys):
    out = tmp_path / 'cmp'
    args = ['--task-args', 'ndim=2,height=4', '--losses', 'tb,rev_kl', '--seeds', '0', '--steps', '30', '--hidden', '16',
            '--eval-every', '10', '--device', 'cpu', '--out', str(out), '--quiet']
    compare_main(args)                                         # in this process: the same entry point, no start-up cost
    for run in ('tb-seed0', 'rev_kl-seed0'): assert (out / run / 'checkpoint.pt').exists() and (out / run / 'final.json').exists()
    summary = (out / 'summary.csv').read_text()
    code, err = in_process(compare_main, args, capsys)
    assert code == 2 and 'already holds a run' in err and '--resume' in err, err
    compare_main(args + ['--resume'])
    assert (out / 'summary.csv').read_text() == summary      # finished runs are read back, wall time included

def test_outputs_are_strict_json(tmp_path):
    out = tmp_path / 'j'
    r = cli('gfn-train', *ARGS, '--steps', '20', '--out', str(out))
    assert r.returncode == 0, r.stderr
    def strict(s):
        return json.loads(s, parse_constant=lambda c: pytest.fail(f"{c} is not JSON: {s[:200]}"))
    strict(r.stdout.strip().splitlines()[-1])
    ms = [strict(l) for l in lines(out)]
    assert ms[0]['step'] == 0 and ms[0]['train_loss'] is None            # no training loss before the first step: null
    strict((out / 'final.json').read_text()); strict((out / 'config.json').read_text())

def test_evaluation_does_not_touch_the_training_stream():
    "The diffusion task's metrics sample backward paths: the training must not depend on how often one evaluates."
    kw = dict(task='diffusion', task_kw=dict(T=5), loss='tb', steps=20, batch_size=16, hidden=32, device='cpu', progress=False)
    every5, every10 = (train(TrainConfig(eval_every=k, **kw))['history'] for k in (5, 10))
    window = ('wall', 'train_loss', 'distinct_x', 'distinct_len', 'collapsed')     # statistics of the batches since the last evaluation
    drop = lambda r: {k: v for k, v in r.items() if k not in window}
    common = {r['step']: drop(r) for r in every10}
    assert sorted(common) == [0, 10, 20] and 'jsd' in common[20]
    assert [drop(r) for r in every5 if r['step'] in common] == list(common.values())

@pytest.mark.parametrize('args,msg', [
    (['--task', 'nope'], "unknown task 'nope'; valid tasks: "),
    (['--loss', 'nope'], "unknown loss 'nope'; valid losses are"),
    (['--steps', '0'], 'steps must be a positive integer, got 0'),
    (['--lr', '-1'], 'lr must be > 0, got -1.0'),
    (['--out', '/proc/nope'], 'not writable'),
    (['--task-args', 'ndim'], "expected key=value in 'ndim'"),
    (['--task-args', 'ndim=0'], 'ndim must be a positive integer, got 0'),
    (['--task-args', 'foo=1'], "task 'hypergrid' has no argument 'foo'; it accepts ndim, height, R0, R1, R2"),
    (['--device', 'nope'], "unknown device 'nope'"),
    pytest.param(['--device', 'cuda'], 'CUDA is not available on this machine',
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is present')),
    (['--loss', 'tb', '--loss-args', 'alpha=0.5'], "loss 'tb' has no argument 'alpha'; it accepts init_logZ"),
    (['--loss', 'renyi', '--loss-args', 'lam=0.5'], "loss 'renyi' has no argument 'lam'; it accepts alpha, cv"),
    (['--loss', 'renyi', '--alpha', '0.5'], "--alpha is an argument of loss 'renyi': pass it as --loss-args alpha=VALUE"),
    (['--height', '4'], "--height is an argument of task 'hypergrid': pass it as --task-args height=VALUE"),
    (['--loss', 'renyi', '--batch-size', '1'], "loss 'renyi' with cv='loo+sf' uses a leave-one-out or cross-fitted statistic of the batch: batch_size must be at least 2, got 1"),
    (['--loss', 'tsallis', '--loss-args', 'cv=sf', '--batch-size', '1'], "loss 'tsallis' with cv='sf' uses a leave-one-out or cross-fitted statistic"),
    (['--loss', 'tb', '--loss-args', 'sf_coef=batch'], "loss 'tb' has no argument 'sf_coef'"),
    (['--loss', 'rev_kl', '--loss-args', 'cv=loo', '--batch-size', '1'], 'batch_size must be at least 2'),
    (['--loss', 'renyi', '--loss-args', 'cv=none', '--batch-size', '1', '--steps', '1'], None),   # no control variate: batch 1 is fine
    (['--loss', 'vargrad', '--batch-size', '1'], "loss 'vargrad' uses a leave-one-out or cross-fitted statistic of the batch: batch_size must be at least 2"),
    (['--resume'], '--resume (resume=True) needs the output folder'),
])
def test_cli_errors_are_one_line(args, msg, capsys):
    if msg is None:                                            # a setting that is accepted: the run succeeds
        train_main(['--steps', '5', '--quiet', '--device', 'cpu', '--hidden', '16', *args]); return
    code, err = in_process(train_main, ['--steps', '5', '--quiet', *args], capsys)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, (code, err)
    assert err.startswith('gfn-train: error: ')

@pytest.mark.parametrize('args,msg', [
    (['--losses', ''], "--losses is empty ('')"),
    (['--seeds', ','], "--seeds is empty (',')"),
    (['--seeds', '0,0'], 'seeds must be distinct, got [0, 0]'),
    (['--losses', 'tb,nope'], "unknown loss 'nope'"),
    (['--losses', 'tb,db', '--loss-args', 'alpha=0.5'], '--loss-args alpha: not an argument of any of the losses tb, db'),
    (['--losses', 'tb,renyi', '--alpha', '0.5'], "--alpha is an argument of loss 'renyi': pass it as --loss-args alpha=VALUE"),
    (['--device', 'nope'], "unknown device 'nope'"),
])
def test_compare_errors_are_one_line(args, msg, capsys, tmp_path):
    code, err = in_process(compare_main, ['--steps', '5', '--quiet', '--out', str(tmp_path / 'c'), *args], capsys)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, (code, err)

def test_resume_errors_name_resume(tmp_path, capsys):
    code, err = in_process(train_main, ['--steps', '5', '--quiet', '--out', str(tmp_path / 'empty'), '--resume'], capsys)
    assert code == 2 and '--resume (resume=True) given but there is no checkpoint at' in err, err

def test_a_real_process_error_has_no_traceback():
    r = cli('gfn-train', '--steps', '5', '--quiet', '--loss', 'tb', '--loss-args', 'alpha=0.5')
    assert r.returncode == 2 and 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

def test_corrupt_checkpoint_and_wrong_run(tmp_path):
    out = tmp_path / 'd'; out.mkdir()
    (out / 'checkpoint.pt').write_bytes(b'not a checkpoint')
    (out / 'metrics.jsonl').write_text('{"step": 0}\n')
    r = cli('gfn-train', '--steps', '5', '--quiet', '--out', str(out), '--resume')
    assert r.returncode == 2 and 'corrupt or unreadable' in r.stderr
    assert (out / 'checkpoint.pt').read_bytes() == b'not a checkpoint'   # nothing already written is lost
    r = cli('gfn-train', '--steps', '5', '--quiet', '--out', str(out))
    assert r.returncode == 2 and 'already holds a run' in r.stderr and '--resume' in r.stderr
    e = tmp_path / 'e'
    assert cli('gfn-train', *ARGS, '--steps', '20', '--out', str(e)).returncode == 0
    r = cli('gfn-train', *ARGS, '--steps', '40', '--batch-size', '16', '--out', str(e), '--resume')
    assert r.returncode == 2 and 'belongs to a different run' in r.stderr

def test_metrics_hand_computed():
    p, q = torch.tensor([.2, .3, .5]), torch.tensor([.5, .3, .2])
    assert math.isclose(l1(p, q), .6, abs_tol=1e-7) and math.isclose(tv(p, q), .3, abs_tol=1e-7)
    assert math.isclose(mean_abs_error(p, q), .2, abs_tol=1e-7)
    m = (p + q) / 2
    kl = lambda a, b: float((a * (a / b).log()).sum())
    assert math.isclose(jsd(p, q), .5 * kl(p, m) + .5 * kl(q, m), rel_tol=1e-6)
    # the diamond with a uniform policy: p_T = (1/4, 1/4, 1/2), pi = (1/6, 2/6, 3/6)
    env = diamond_env()
    met = exact_metrics(env, TablePolicy(env))
    assert math.isclose(met['l1'], 1/12 + 1/12, abs_tol=1e-6)
    assert math.isclose(met['kl_pt_pi'], .25 * math.log(1.5) + .25 * math.log(.75), abs_tol=1e-6)
    # top-K of distinct objects and modes on the 8x8 grid
    hg = HyperGrid(2, 8)
    t = ModeTracker(hg, k=3)
    x = torch.tensor([[1, 1], [1, 1], [0, 0], [3, 4], [6, 6]])
    t.update(x, hg.log_reward(x))
    assert math.isclose(t.top_k(), (2.6 + 2.6 + 0.6) / 3, rel_tol=1e-6) and t.n_modes == 2

# ---- issue 11: the paper's protocol, options reaching every run, on-policy refusal, collapse

@pytest.fixture
def onpolicy_loss(monkeypatch):
    "A loss whose estimator needs samples from p_F itself, registered for the test only."
    from gfn_nbdev.losses import LOSSES
    class OnPolicyTB(LOSSES['tb']): on_policy = True
    monkeypatch.setitem(LOSSES, 'onpolicy_tb', OnPolicyTB)
    return 'onpolicy_tb'

@pytest.mark.parametrize('flag', [['--epsilon', '0.1'], ['--temperature', '2']])
def test_an_on_policy_loss_refuses_exploration(flag, onpolicy_loss, capsys):
    code, err = in_process(train_main, ['--steps', '5', '--quiet', '--loss', onpolicy_loss, *flag], capsys)
    assert code == 2 and "loss 'onpolicy_tb' needs on-policy samples" in err and len(err.strip().splitlines()) == 1, err

def test_off_policy_losses_accept_exploration():
    "Every registered loss with on_policy=False trains on ε-uniform and tempered batches, with no other setting."
    from gfn_nbdev.losses import LOSSES
    off = [n for n, c in LOSSES.items() if not c.on_policy]
    assert {'tb', 'db', 'subtb'} <= set(off)
    for name in off:
        res = train(TrainConfig(loss=name, epsilon=0.1, temperature=2., steps=2, eval_every=2, hidden=16, device='cpu',
                                progress=False, task_kw=dict(ndim=2, height=4)))
        assert res['final']['step'] == 2 and math.isfinite(res['final']['l1']), name

def test_protocol_precedence():
    "protocol='paper' fills what is not given; what is given wins; the default protocol is ours."
    c = TrainConfig(task='sequences', loss='tsallis', protocol='paper')
    assert (c.batch_size, c.lr, c.lr_aux, c.lr_schedule, c.loss_kw) == (128, 1e-3, 0.1, 'poly', {'alpha': 0.5, 'sf_params': 'all'})
    c = TrainConfig(task='phylo', loss='renyi', protocol='paper', lr=3e-4, loss_kw=dict(alpha=2.0, cv='loo'))
    assert (c.batch_size, c.lr, c.lr_schedule, c.loss_kw) == (64, 3e-4, 'poly', {'alpha': 2.0, 'sf_params': 'all', 'cv': 'loo'})
    c = TrainConfig(task='sets', loss='renyi')
    assert (c.batch_size, c.lr_schedule, c.loss_kw, c.protocol) == (64, 'constant', {}, None)
    # a config written to config.json reads back to the same run
    c = TrainConfig(task='sets', loss='renyi', protocol='paper', batch_size=16)
    assert TrainConfig(**json.loads(json.dumps(c.__dict__))) == c

@pytest.mark.filterwarnings('ignore:Detected call of')        # stepping the schedule alone, on purpose
def test_poly_power_anneals_the_learning_rate():
    from gfn_nbdev.training import Trainer
    t = Trainer(TrainConfig(lr_schedule='poly', poly_power=2., steps=4, hidden=16, device='cpu', progress=False))
    lrs = []
    for _ in range(4): lrs.append(t.opt.param_groups[0]['lr']); t.sched.step()
    assert lrs == pytest.approx([1e-3 * (1 - k / 4) ** 2 for k in range(4)])

def test_compare_passes_every_option_to_every_run(tmp_path):
    "gfn-compare's options reach the TrainConfig of each run: read back from each run's config.json."
    from gfn_nbdev.losses import LOSSES
    out = tmp_path / 'c'
    eps = '0.1' if not LOSSES['renyi'].on_policy else '0'     # the divergences explore once they are off-policy-capable
    compare_main(['--task', 'sets', '--task-args', 'n_items=6,set_size=3', '--losses', 'tb,renyi', '--seeds', '0,1',
                  '--protocol', 'paper', '--steps', '2', '--eval-every', '1', '--hidden', '16', '--device', 'cpu',
                  '--epsilon', eps, '--temperature', '1.5', '--clip', '5', '--poly-power', '2', '--lr-aux', '0.05',
                  '--collapse-k', '4', '--quiet', '--out', str(out)])
    for loss in ('tb', 'renyi'):
        for seed in (0, 1):
            cfg = json.loads((out / f'{loss}-seed{seed}' / 'config.json').read_text())
            assert (cfg['loss'], cfg['seed'], cfg['protocol']) == (loss, seed, 'paper')
            assert (cfg['epsilon'], cfg['temperature'], cfg['clip'], cfg['poly_power'], cfg['collapse_k']) == (
                float(eps), 1.5, 5.0, 2.0, 4)
            assert (cfg['batch_size'], cfg['lr'], cfg['lr_aux'], cfg['lr_schedule']) == (128, 1e-3, 0.05, 'poly')
            assert cfg['loss_kw'] == ({'alpha': 0.5, 'sf_params': 'all'} if loss == 'renyi' else {})   # the paper's α and â
            assert 'collapsed' in json.loads((out / f'{loss}-seed{seed}' / 'final.json').read_text())
    assert (out / 'summary.md').read_text().splitlines()[0].count('collapsed') == 1

def test_train_cli_protocol_and_explicit_options(tmp_path):
    out = tmp_path / 'r'
    train_main(['--task', 'sets', '--task-args', 'n_items=6,set_size=3', '--protocol', 'paper', '--batch-size', '16',
                '--lr-schedule', 'constant', '--loss-args', 'alpha=0.7', '--loss', 'renyi', '--steps', '2', '--eval-every', '1',
                '--hidden', '16', '--device', 'cpu', '--quiet', '--out', str(out)])
    cfg = json.loads((out / 'config.json').read_text())
    assert (cfg['batch_size'], cfg['lr_schedule'], cfg['loss_kw']['alpha'], cfg['lr']) == (16, 'constant', 0.7, 1e-3)

def _all_like_the_first(sample):
    "A sampler whose batch is N copies of its first trajectory: a policy collapsed onto one object, by construction."
    import dataclasses
    def f(*a, **kw):
        tr = sample(*a, **kw)
        i = torch.zeros(len(tr), dtype=torch.long, device=tr.lengths.device)
        return dataclasses.replace(tr, **{k.name: getattr(tr, k.name)[i] for k in dataclasses.fields(tr)
                                          if isinstance(getattr(tr, k.name), torch.Tensor)})
    return f

def test_a_collapsed_run_is_flagged(monkeypatch, tmp_path):
    import gfn_nbdev.training as T
    monkeypatch.setattr(T, 'sample_trajectories', _all_like_the_first(T.sample_trajectories))
    out = tmp_path / 'col'
    res = train(TrainConfig(task_kw=dict(ndim=2, height=4), steps=5, eval_every=1, collapse_k=3, hidden=16,
                            device='cpu', progress=False, out=str(out)))
    rows = res['history']                                     # eval_every=1: each window is one batch of identical copies
    assert [r['distinct_x'] for r in rows] == [None, 1, 1, 1, 1, 1]
    assert [r['collapsed'] for r in rows] == [False, False, False, True, True, True]   # from the 3rd evaluation in a row
    assert json.loads((out / 'final.json').read_text())['collapsed'] is True
    assert [json.loads(l)['collapsed'] for l in (out / 'metrics.jsonl').read_text().splitlines()][-1] is True
    from gfn_nbdev.training import summarize
    assert summarize([dict(loss='tb', seed=0, wall=1., final=res['final'], history=rows)])[0]['n_collapsed'] == 1

def test_a_healthy_run_is_not_flagged():
    res = train(TrainConfig(task_kw=dict(ndim=2, height=4), steps=8, eval_every=2, collapse_k=1, hidden=16,
                            device='cpu', progress=False))
    rows = res['history'][1:]
    assert all(r['distinct_x'] > 1 and r['distinct_len'] > 1 and not r['collapsed'] for r in rows), rows
    assert res['final']['collapsed'] is False

def test_collapse_state_survives_resume(tmp_path):
    "The counts since the last evaluation and the streak are in the checkpoint: resumed runs report the same rows."
    import gfn_nbdev.training as T
    kw = dict(task_kw=dict(ndim=2, height=4), steps=6, eval_every=3, ckpt_every=0, hidden=16, device='cpu', progress=False)
    ref = train(TrainConfig(**kw))['history']
    t = T.Trainer(TrainConfig(**kw)); t._record()
    for _ in range(3): t.train_step()
    t._record(); t.train_step()                              # stop mid-window, save, and continue in a new trainer
    t.save(tmp_path / 'ck.pt')
    u = T.Trainer(TrainConfig(**kw)).load(tmp_path / 'ck.pt')
    for _ in range(2): u.train_step()
    u._record()
    keys = ('step', 'distinct_x', 'distinct_len', 'collapsed', 'l1')
    assert [[r[k] for k in keys] for r in u.history] == [[r[k] for k in keys] for r in ref]
