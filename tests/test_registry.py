"The method registry is the one table of methods: a method's name is written in one module, and every consumer reads the registry."
import importlib, os, re, subprocess, sys
from pathlib import Path
import pytest
from typer.testing import CliRunner
import layoutlab
from layoutlab.guidance import registry
from layoutlab.guidance.registry import Method, method_names, methods, register
from layoutlab.ui import cli   # imported before a test registers its method: the help must still show it

PKG = Path(layoutlab.__file__).parent
BUILTIN = [m.name for m in importlib.import_module(registry.BUILTIN).METHODS]

def modules_naming(name:str)->list:
    "The package's modules (but `_modidx.py`) that write `name` as a quoted string: 'name' or \"name\"."
    quoted = re.compile(rf"""(['"]){re.escape(name)}\1""")
    return sorted(p.relative_to(PKG).as_posix() for p in PKG.rglob('*.py') if p.name != '_modidx.py' and quoted.search(p.read_text()))

def test_each_method_is_named_in_one_module():
    "No table of method names outside the module that registers them ('none', the unguided run, is every study's baseline)."
    names = [n for n in BUILTIN if n != 'none']
    assert len(names) >= 9
    assert {n: modules_naming(n) for n in names} == {n: ['guidance/methods.py'] for n in names}

def test_modules_naming_finds_quotes_only(tmp_path, monkeypatch):
    "The check itself: either quote counts, a name inside a longer word or without quotes does not."
    (tmp_path/'a.py').write_text("x = 'sali'\n"); (tmp_path/'b.py').write_text('y = "sali"\n')
    (tmp_path/'c.py').write_text("z = 'salient'  # sali\n"); (tmp_path/'_modidx.py').write_text("'sali'\n")
    monkeypatch.setattr(sys.modules[__name__], 'PKG', tmp_path)
    assert modules_naming('sali') == ['a.py', 'b.py']

# --- every consumer reads the registry: a method registered in this session shows up in each

@pytest.fixture
def extra():
    "A session method of the test's own, tagged for every study, with a calibration grid; taken out of the registry afterwards."
    m = register(Method('zz_registry_test', 'a method of the registry test, with no pieces',
                        lambda pipe, over: {}, grid=('Guidance', 'step_scale', [0.25, 0.5, 1.0]),
                        seconds=7.0, tags=('bench', 'calibrate', 'perf', 'sweep')))
    yield m
    registry._session.pop(m.name, None)
    assert m.name not in method_names()

def flat(text:str)->str: return ' '.join(text.split())

def test_generate_help_lists_every_method_with_its_label(extra):
    out = flat(CliRunner().invoke(cli.app, ['generate', '--help'], terminal_width=200).output)
    for n, m in methods().items(): assert flat(f'{n}: {m.label}') in out, n
    assert 'zz_registry_test: a method of the registry test' in out

def test_generate_help_in_a_fresh_process_reads_the_source_without_torch():
    "Without the registry loaded, `--help` reads the built-in list's and the bundled plug-ins' source: every such method with its label, no torch."
    code = ("import sys; from layoutlab.ui.cli import app, method_menu; m = method_menu(); "
            "print(repr(m)); print(sorted({'torch', 'diffusers'} & set(sys.modules)))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': str(PKG.parent)})
    assert r.returncode == 0, r.stderr
    menu, loaded = r.stdout.strip().splitlines()
    assert eval(menu) == [(m.name, m.label, tuple(m.tags)) for m in [*importlib.import_module(registry.BUILTIN).METHODS, *registry.bundled().values()]]
    assert loaded == '[]'
    r = subprocess.run([sys.executable, '-c', 'from layoutlab.ui.cli import app; app()', 'generate', '--help'], capture_output=True, text=True,
                       env={**os.environ, 'PYTHONPATH': str(PKG.parent), 'COLUMNS': '200'})
    assert r.returncode == 0, r.stderr
    assert all(flat(f'{m.name}: {m.label}') in flat(r.stdout) for m in methods().values() if m.name in BUILTIN or m.name in registry.bundled())

def test_the_cli_defaults_are_the_registry_tags(extra):
    from layoutlab.ui.cli import default_method, tagged_names, method_menu
    from layoutlab.core.layout import Layout
    assert default_method(None, Layout('a red circle', [dict(phrase='red circle', box=[0, 0, .5, .5])])) == registry.tagged('generate')[0]
    for tag in ('bench', 'calibrate', 'perf', 'sweep'):
        assert tagged_names(tag, method_menu()) == registry.tagged(tag) and extra.name in registry.tagged(tag)

def test_the_editor_menu_is_the_registry(extra):
    from layoutlab.ui import widgets
    assert widgets.available_methods() == method_names()
    assert widgets.method_choices()[-1] == (f'{extra.name} — {extra.label}', extra.name)

class Stop(Exception): "Raised where a study would start working: what it was about to run is in its arguments."

@pytest.fixture
def started(monkeypatch, tmp_path):
    "Stops `run_benchmark` and `run_calibration` at `_start` (input checked, nothing run) and gives its arguments."
    from layoutlab.studies import bench
    seen = {}
    def stop(command, *a, **kw): seen.update(kw, command=command); raise Stop()
    monkeypatch.setattr(bench, '_start', stop)   # where both entry points look it up
    return seen

def test_bench_runs_the_methods_tagged_bench(extra, started, tmp_path):
    from layoutlab.studies import bench
    assert bench.bench_methods() == [m for m in registry.tagged('bench') if m != 'none']
    assert bench.bench_methods()[-1] == extra.name
    with pytest.raises(Stop): bench.run_benchmark('tiny-sd15', n=1, n_sweep=2, out=tmp_path/'b.json', log=lambda s: None)
    assert started['methods'] == bench.bench_methods()
    assert started['grids'] == {m: methods()[m].grid for m in started['methods'] if methods()[m].grid}
    plan = bench.bench_plan(1, 2, [extra.name])
    assert plan['runs'][extra.name] == 1 + 2 * 3 and plan['cpu_minutes'] == pytest.approx((3 * 1.0 + 7 * 7.0) / 60)

def test_calibrate_sweeps_each_methods_grid(extra, started, tmp_path):
    from layoutlab.studies import bench
    assert bench.calibration_grids() == {n: m.grid for n, m in methods().items() if m.grid is not None}
    with pytest.raises(Stop): bench.run_calibration('tiny-sd15', n=1, out=tmp_path/'c.json', log=lambda s: None)
    assert started['methods'] == registry.tagged('calibrate') and started['grids'][extra.name] == extra.grid
    assert 'winwinlay' not in started['methods']            # it inherits naef_adaptive's values: not calibrated twice
    with pytest.raises(bench.BenchError, match="no calibration grid for sali"): bench.run_calibration('tiny-sd15', methods=['sali'], out=tmp_path/'c.json')

def test_a_misspelt_method_is_the_registry_message(tmp_path):
    from layoutlab.studies import bench
    from layoutlab.ui.cli import check_method, CLIError
    with pytest.raises(ValueError) as want: registry.check_method('layout_contrl')
    with pytest.raises(bench.BenchError) as got: bench.run_benchmark('tiny-sd15', methods=['layout_contrl'], out=tmp_path/'b.json')
    with pytest.raises(CLIError) as cli: check_method('layout_contrl')
    assert str(got.value) == str(cli.value) == str(want.value) and "(did you mean 'layout_control'?)" in str(want.value)

def test_the_studies_read_their_methods_from_the_registry():
    "What the studies used to list by hand, now read from each Method."
    from layoutlab.studies import ablation, perf, theorem41
    assert ablation.table_methods() == ['none', 'aef_backprop', 'naef_backprop', 'aef_adaptive', 'naef_adaptive', 'layout_control', 'ilgd']
    assert ablation.paper_order() == ['naef_adaptive', 'naef_backprop', 'aef_adaptive', 'aef_backprop']
    assert ablation.study_contrasts() == [('naef_adaptive', 'naef_backprop'), ('naef_backprop', 'aef_adaptive'), ('aef_adaptive', 'aef_backprop'),
                                          ('naef_adaptive', 'aef_adaptive'), ('naef_backprop', 'aef_backprop')]
    assert [ablation.label(m) for m in ablation.table_methods()] == ['none', 'AEF+BP', 'NAEF+BP', 'AEF+Ada', 'NAEF+Ada', 'Layout-Control', 'iLGD']
    assert perf.perf_methods() == ['none', 'layout_control', 'winwinlay', 'ilgd', 'sali', 'gradsam']
    assert {m: perf.floor_kind(m) for m in perf.perf_methods()} == dict(none='unguided', layout_control='energy', winwinlay='energy_eps', ilgd='loss', sali='energy', gradsam='energy')
    assert theorem41.study_conditions() == ('none', 'aef_backprop', 'naef_backprop', 'winwinlay', 'kick')
    assert theorem41.study_overrides() == {'winwinlay': {'Guidance': {'score': 'cfg'}}}
