"""Every distribution that layoutlab imports or launches is declared in settings.ini, so the README's install gives a
working package on a fresh machine: the package's imports against `requirements`, the tests' and the notebooks'
against `requirements` + `dev_requirements`. Declared means named there directly: leaning on some other package's
dependencies breaks the day that package drops one."""
import ast, configparser, functools, json, re, shlex, sys
from importlib import metadata
from pathlib import Path
import pytest

ROOT = Path(__file__).parent.parent
IGNORED = {'layoutlab', '__future__'}

def norm(name:str)->str: return re.sub(r'[-_.]+', '-', name).lower()  # PEP 503
def req_name(req:str)->str: return norm(re.split(r'[<>=!~\[;@ ]', req, maxsplit=1)[0])

def declared(section:str)->set:
    "Distribution names of one requirements line of settings.ini (read directly, never from installed metadata)."
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini', encoding='utf-8')
    return {req_name(r) for r in shlex.split(cfg['DEFAULT'].get(section, ''))}

def _calls_module(node)->bool:
    "`[sys.executable, '-m', ...]`: a Python module run as a program."
    return len(node.elts) > 2 and isinstance(node.elts[1], ast.Constant) and node.elts[1].value == '-m'

def used(source:str)->tuple:
    "(top-level modules imported, console commands launched) by Python `source`."
    mods, cmds = set(), set()
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.Import): mods |= {a.name.split('.')[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module: mods.add(n.module.split('.')[0])
        elif isinstance(n, ast.Call) and getattr(n.func, 'attr', getattr(n.func, 'id', None)) in ('import_module', '__import__') \
                and n.args and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str):
            mods.add(n.args[0].value.split('.')[0])
        elif isinstance(n, ast.List) and n.elts:
            words = [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else None for e in n.elts]
            if _calls_module(n):
                mod, sub = words[2], words[3] if len(words) > 3 else None
                if mod == 'jupyter' and sub: cmds.add(f'jupyter-{sub}')  # `python -m jupyter lab` runs `jupyter-lab`
                elif mod: mods.add(mod.split('.')[0])
            elif words[0]: cmds.add(words[0])
    return mods - IGNORED - set(sys.stdlib_module_names), cmds

def notebook_code(path:Path)->str:
    "The code cells of a notebook, shell (`!`) and magic (`%`) lines left out."
    cells = [''.join(c['source']) for c in json.loads(path.read_text())['cells'] if c['cell_type'] == 'code']
    return '\n'.join(l for c in cells for l in c.splitlines() if not l.lstrip().startswith(('!', '%')))

@functools.cache
def providers()->dict: return metadata.packages_distributions()

@functools.cache
def scripts()->dict:
    "Console command -> distribution that installs it."
    return {ep.name: norm(ep.dist.name) for ep in metadata.entry_points(group='console_scripts') if ep.dist is not None}

def undeclared(source:str, allowed:set)->list:
    "What `source` imports or launches that no distribution in `allowed` provides, each with the reason."
    pkgs, cmds = providers(), scripts()
    mods, launched = used(source)
    out = []
    for m in sorted(mods):
        dists = {norm(d) for d in pkgs.get(m, [])}
        if not dists: out.append(f'{m} (imported, not installed here: which distribution?)')
        elif not dists & allowed: out.append(f"{m} (imported, from {', '.join(sorted(dists))})")
    for c in sorted(launched):
        d = cmds.get(c)
        if d and d != 'layoutlab' and d not in allowed: out.append(f'{c} (launched, from {d})')
    return out

def report(files, allowed:set)->list:
    return [f'{f.relative_to(ROOT)}: {u}' for f in files
            for u in undeclared(notebook_code(f) if f.suffix == '.ipynb' else f.read_text(), allowed)]

def test_package_imports_only_runtime_requirements():
    assert report(sorted((ROOT/'layoutlab').rglob('*.py')), declared('requirements')) == []

def test_tests_and_notebooks_import_only_declared_requirements():
    files = sorted((ROOT/'tests').glob('*.py')) + sorted((ROOT/'nbs').rglob('*.ipynb'))
    assert report(files, declared('requirements') | declared('dev_requirements')) == []

def test_jupyter_first_toolkit_declares_its_notebook_server():
    "A user must be able to open the notebooks after the README's install: JupyterLab and a kernel are runtime requirements."
    assert {'jupyterlab', 'ipykernel', 'fastcore', 'filelock'} <= declared('requirements')

@pytest.mark.parametrize('source, expected', [
    ('import not_a_real_module_3f9c', ['not_a_real_module_3f9c (imported, not installed here: which distribution?)']),
    ('from pytest import fixture', ['pytest (imported, from pytest)']),          # a dev requirement, not a runtime one
    ('import fastcore.test as t\nimport json', []),                              # declared (runtime), and stdlib
    ('def f():\n    import importlib; importlib.import_module("playwright.sync_api")', ['playwright (imported, from playwright)']),
    ('import subprocess, sys\nsubprocess.run([sys.executable, "-m", "jupyter", "lab"])', []),
    ('subprocess.Popen(["pytest", "-q"])', ['pytest (launched, from pytest)']),
])
def test_the_check_can_fail(source, expected):
    "The check against the runtime requirements, on sources that break it and sources that do not."
    assert undeclared(source, declared('requirements')) == expected

def test_a_launched_notebook_server_must_be_declared():
    src = 'import subprocess, sys\nsubprocess.run([sys.executable, "-m", "jupyter", "lab", "--no-browser"])'
    assert undeclared(src, declared('requirements') - {'jupyterlab'}) == ['jupyter-lab (launched, from jupyterlab)']
