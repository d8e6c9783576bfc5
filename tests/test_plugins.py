"""Plug-in methods, found as an installed package is: a throwaway distribution on `sys.path` declares three entry points in
the group `layoutlab.methods` (one good, one whose module is missing, one that names no `Method`). Every check runs in a
fresh process with `PYTHONPATH=<distribution>:<repo>`, so the registry discovers the plug-ins as a user's session would."""
import json, os, subprocess, sys, textwrap
from pathlib import Path
import pytest
import layoutlab

ROOT = Path(layoutlab.__file__).resolve().parents[1]   # the checkout whose layoutlab the subprocesses import
CLI = [sys.executable, '-c', 'from layoutlab.ui.cli import app; app(prog_name="layoutlab")']   # `layoutlab`, run by this Python

PLUGIN = '''
"A demo plug-in: Layout-Control with half its backprop step."
from layoutlab.guidance.registry import Method, get_method
from layoutlab.guidance.pieces import parameters, with_params

def build(pipe, overrides):
    "Layout-Control's seams (its model defaults and the caller's overrides), with the backprop step halved."
    seams = get_method('layout_control').build(pipe, overrides)
    g = seams['before_step']
    return {**seams, 'before_step': with_params(g, step_scale=parameters(g)['step_scale'] / 2)}

METHOD = Method('demo_lc', 'demo: Layout-Control with half the step', build)
NOT_A_METHOD = 'demo_lc'   # an entry point naming this is a mistake the registry reports and skips
'''

ENTRY_POINTS = {'demo_lc': 'llplug_demo:METHOD', 'broken': 'llplug_missing:X', 'notamethod': 'llplug_demo:NOT_A_METHOD'}
BROKEN = {'broken': 'llplug_missing', 'notamethod': 'is not a Method'}   # plug-in -> what its warning says

def write_distribution(folder:Path, name:str, modules:dict, entry_points:dict, group:str='layoutlab.methods')->Path:
    "A distribution as an installer leaves it in site-packages: its modules and `NAME-0.1.dist-info` (METADATA, entry_points.txt)."
    for rel, text in modules.items():
        (folder/rel).parent.mkdir(parents=True, exist_ok=True); (folder/rel).write_text(textwrap.dedent(text))
    info = folder/f'{name}-0.1.dist-info'; info.mkdir(parents=True, exist_ok=True)
    (info/'METADATA').write_text(f'Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n')
    (info/'entry_points.txt').write_text(f'[{group}]\n' + ''.join(f'{k} = {v}\n' for k, v in entry_points.items()))
    return folder

@pytest.fixture(scope='module')
def plugin(tmp_path_factory):
    return write_distribution(tmp_path_factory.mktemp('site'), 'llplug_demo', {'llplug_demo/__init__.py': PLUGIN}, ENTRY_POINTS)

def _env(plugin):   # one torch thread: the runs are tiny, and on a shared CPU more threads only spin
    return {**{k: v for k, v in os.environ.items() if k != 'PYTHONWARNINGS'}, 'PYTHONPATH': f'{plugin}{os.pathsep}{ROOT}', 'OMP_NUM_THREADS': '1'}

def py(plugin, code:str)->subprocess.CompletedProcess:
    "Run `code` in a fresh Python that sees the plug-in; its last stdout line is JSON."
    r = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True, env=_env(plugin), cwd=plugin)
    assert r.returncode == 0, r.stderr
    return r

def _result(r): return json.loads(r.stdout.strip().splitlines()[-1])

def _warning_lines(stderr:str)->list: return [l for l in stderr.splitlines() if 'RuntimeWarning' in l and 'plug-in' in l]

SESSION = '''
import importlib, json, sys
import layoutlab
from layoutlab import sample, load_pipeline, Layout, Recorder, Method, register
from layoutlab.guidance import registry
import layoutlab.guidance.methods, layoutlab.ui.cli, layoutlab.studies.bench
from layoutlab.ui.widgets import available_methods
builtin = [m.name for m in importlib.import_module(registry.BUILTIN).METHODS]
imported_before = 'llplug_demo' in sys.modules                         # nothing so far asked which methods exist
print('-- methods() --', file=sys.stderr, flush=True)
names = list(layoutlab.methods())
imported_after = 'llplug_demo' in sys.modules
again = registry.method_names()                                          # plug-ins are looked for once: one warning each
_, lc_params = registry.preset('layout_control', None)
pipe = load_pipeline('tiny-sd15')
lay = Layout('a red circle and a blue square', [dict(phrase='red circle', box=[.1, .1, .5, .5])], seed=0)
runs, failed = {}, {}
for m in ('layout_control', 'demo_lc'):
    try: runs[m] = sample(pipe, lay, m, steps=2, recorder=Recorder(layers=[]), progress=False, Guidance=dict(threshold=None, max_iterations=1)).recording
    except ValueError as e: failed[m] = str(e)      # an unknown method: each test below fails on its own assertion
print(json.dumps(dict(builtin=builtin, names=names, again=again, imported_before=imported_before, imported_after=imported_after,
                      lc_params=lc_params, menu=available_methods(), failed=failed,
                      recorded={m: r.attrs['method'] for m, r in runs.items()},
                      step_size={m: float(r['step_size'].isel(step=0, iteration=0)) for m, r in runs.items()},
                      params={m: json.loads(r.attrs['params']) for m, r in runs.items()})))
'''

@pytest.fixture(scope='module')
def session(plugin):
    "One fresh session with the plug-in installed: the registry's names, the editor's menu and two short runs."
    r = py(plugin, SESSION)
    return _result(r), r.stderr

def test_discovered_after_the_builtins(session):
    res, _ = session
    n = len(res['builtin'])
    assert n >= 2 and res['names'][:n] == res['builtin'], res['names']
    from layoutlab.guidance.registry import bundled
    assert res['names'][n:] == [*bundled(), 'demo_lc'], res['names']   # the good plug-in, after the built-ins and the bundled plug-ins; not the broken ones
    assert res['again'] == res['names']

def test_each_broken_plugin_is_one_warning_line(session):
    _, stderr = session
    lines = _warning_lines(stderr)
    assert len(lines) == len(BROKEN), stderr                     # one each, though the methods were asked for again and again
    for name, says in BROKEN.items():
        mine = [l for l in lines if f"plug-in {name!r}" in l]
        assert len(mine) == 1 and says in mine[0], (name, lines)

def test_builtins_still_work(session):
    res, _ = session
    assert res['lc_params']['before_step']['piece'] == 'Guidance' and res['lc_params']['before_step']['energy'] == 'aef'
    assert res['recorded']['layout_control'] == 'layout_control'

def test_editor_menu_lists_the_plugin(session):
    res, _ = session
    assert res['menu'][0] == 'none' and 'demo_lc' in res['menu'] and 'broken' not in res['menu']

def test_sample_runs_the_plugin_by_name(session):
    "`sample(pipe, layout, 'demo_lc')`: recorded under its name, with the plug-in's own pieces (half Layout-Control's step)."
    res, _ = session
    assert not res['failed'], res['failed']
    assert res['recorded']['demo_lc'] == 'demo_lc'
    lc, demo = res['step_size']['layout_control'], res['step_size']['demo_lc']
    assert lc > 0 and demo == pytest.approx(lc / 2, rel=1e-6), res['step_size']
    assert res['params']['demo_lc']['before_step']['step_scale'] == pytest.approx(res['params']['layout_control']['before_step']['step_scale'] / 2)

def test_plugins_load_lazily(session):
    "Importing layoutlab (and the modules that list methods) imports no plug-in; the first `methods()` does."
    res, stderr = session
    assert res['imported_before'] is False and res['imported_after'] is True
    head, _, tail = stderr.partition('-- methods() --')
    assert not _warning_lines(head) and len(_warning_lines(tail)) == len(BROKEN), stderr   # nothing is loaded before it is asked for

def _cli(plugin, *args): return subprocess.run([*CLI, *args], capture_output=True, text=True, env=_env(plugin), cwd=plugin)

def test_generate_runs_the_plugin(plugin, tmp_path):
    from layoutlab.core.record import load_recording
    r = _cli(plugin, 'generate', 'two-shapes', '--model', 'tiny-sd15', '--method', 'demo_lc', '--out', str(tmp_path), '--steps', '2', '--no-figure')
    assert r.returncode == 0, r.stderr
    assert 'with method demo_lc' in r.stdout
    rec = load_recording(tmp_path/'recording.nc')
    assert rec.attrs['method'] == 'demo_lc' and rec.sizes['step'] == 2

def test_unknown_method_error_lists_the_plugin(plugin):
    r = _cli(plugin, 'generate', 'two-shapes', '--model', 'tiny-sd15', '--method', 'demo_l', '--steps', '1', '--no-figure')
    assert r.returncode == 1
    err = [l for l in r.stderr.splitlines() if l.startswith('error:')]
    assert len(err) == 1 and "(did you mean 'demo_lc'?)" in err[0] and err[0].rstrip().endswith('demo_lc'), r.stderr

def test_generate_help_lists_the_plugin(plugin):
    r = _cli(plugin, 'generate', '--help')
    assert r.returncode == 0 and 'demo_lc' in r.stdout

def test_bench_workers_find_the_plugin(plugin, tmp_path):
    "`layoutlab bench --methods demo_lc`: the Dask workers (other processes) find the plug-in as the main process does."
    r = _cli(plugin, 'bench', '--model', 'tiny-sd15', '--n', '1', '--sweep-n', '0', '--workers', '1', '--steps', '1',
             '--methods', 'demo_lc', '--out', str(tmp_path/'b.json'))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path/'b.json').read_text())
    assert [x['method'] for x in res['rows']] == ['none', 'demo_lc']
