"The package's shape: wings that import only the wings below them, no import circles, and the top-level API."
import ast, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).parents[1]
PKG = ROOT/'layoutlab'
FLOORS = {'core': 0, 'plots': 1, 'shapes': 2, 'guidance': 3, 'studies': 4, 'ui': 5}  # a wing may import only lower floors (and itself)

def module_name(path): return '.'.join(('layoutlab', *path.relative_to(PKG).with_suffix('').parts)).removesuffix('.__init__')

def imports(path):
    "Every layoutlab module `path` imports, at the top or inside a function (relative imports resolved)."
    me, out = module_name(path), set()
    package = me if path.name == '__init__.py' else me.rpartition('.')[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import): names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level: base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1] + ([base] if base else []))
            names = [base] + [f'{base}.{a.name}' for a in node.names]
        else: continue
        out |= {n for n in names if n == 'layoutlab' or n.startswith('layoutlab.')}
    return out

def graph():
    "module -> the package's modules it imports (a `from m import name` counts when `m.name` is a module)."
    mods = {module_name(p): p for p in PKG.rglob('*.py') if p.name != '_modidx.py'}
    return {m: {n for n in imports(p) if n in mods and n != m and n != 'layoutlab'} for m, p in mods.items()}

def wing(m): return m.split('.')[1] if m.count('.') else None

def cycles(g):
    "The import circles of `g`, each as a list of modules (Tarjan's strongly connected components of size > 1)."
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in g.get(v, ()):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in sorted(g):
        if v not in index: visit(v)
    return out

def upward(g):
    "Imports from a lower wing to a higher one, as 'a -> b'."
    return sorted(f'{a} -> {b}' for a, bs in g.items() for b in bs
                  if wing(a) in FLOORS and wing(b) in FLOORS and FLOORS[wing(b)] > FLOORS[wing(a)])

def floors(g):
    "The number of floors: the longest chain of imports, in modules."
    memo = {}
    def depth(v): 
        if v not in memo: memo[v] = 1 + max((depth(w) for w in g[v]), default=0)
        return memo[v]
    return max(depth(v) for v in g)

def test_every_module_lives_in_a_wing():
    flat = [m for m in graph() if m.count('.') == 1 and wing(m) not in FLOORS]
    assert flat == [], f"modules outside the wings: {flat}"

def test_no_import_circles():
    assert cycles(graph()) == []

def test_no_wing_imports_a_higher_one():
    assert upward(graph()) == []

def test_the_checks_catch_a_circle_and_an_upward_import():
    g = {'layoutlab.core.a': {'layoutlab.guidance.b'}, 'layoutlab.guidance.b': {'layoutlab.core.a'}, 'layoutlab.core.c': set()}
    assert cycles(g) == [['layoutlab.core.a', 'layoutlab.guidance.b']]
    assert upward(g) == ['layoutlab.core.a -> layoutlab.guidance.b']
    assert floors({'a': {'b'}, 'b': {'c'}, 'c': set()}) == 3

def test_imports_read_relative_and_function_level_imports(tmp_path):
    src = PKG/'core'/'loop.py'
    assert 'layoutlab.core.layout' in imports(src) and 'layoutlab.core.record' in imports(src)
    assert 'layoutlab.core.models' in graph()['layoutlab.core.loop']

def test_top_level_api_is_light_and_complete():
    code = ("import sys, layoutlab; assert 'torch' not in sys.modules, 'import layoutlab imported torch'; "
            "from layoutlab import sample, Layout, load_pipeline, Recorder, load_recording; "
            "print(sample.__module__, Layout.__module__, load_pipeline.__module__, Recorder.__module__)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['layoutlab.guidance.registry', 'layoutlab.core.layout', 'layoutlab.core.models', 'layoutlab.core.record']
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        import layoutlab; layoutlab.nonesuch

if __name__ == '__main__':
    g = graph()
    print('modules', len(g), 'floors', floors(g), 'circles', cycles(g), 'upward', upward(g))
