"""Golden regression: every method preset on three shipped layouts gives the images and recorded scalars of the
fixture recorded on this kind of CPU (`golden_runs.FIXTURES`: AVX512 and AVX2) bit for bit; the fixtures were recorded
by `tests/golden/make_golden.py` from the code before the module refactor.

The package's API is imported in one place, `golden_runs._api()`."""
import sys
from pathlib import Path
import numpy as np
import pytest
import importlib.util
_spec = importlib.util.spec_from_file_location('golden_runs', Path(__file__).resolve().parent/'golden'/'golden_runs.py')
G = importlib.util.module_from_spec(_spec); sys.modules['golden_runs'] = G; _spec.loader.exec_module(G)   # a file of this folder, not a distribution


@pytest.fixture(scope='module')
def pipe(): return G.load_pipe()


@pytest.fixture(scope='module')
def golden():
    cap = G.environment()['cpu_capability']
    path = G.fixture_for(cap)
    if path is None: pytest.skip(f"no golden fixture recorded on a {cap} CPU (torch's kernels, so the last bits, differ by CPU): "
                                 f"record one from commit af758b4 as tests/golden/make_golden.py says")
    return G.load_fixture(path)


def _where(golden)->str:
    "The recording environment of the fixture next to today's, for a failure message."
    now = G.environment()
    return '; '.join(f"{k} {golden[f'_meta/{k}']} (now {now[k]})" for k in now if f'_meta/{k}' in golden)


def test_fixture_covers_every_method(golden):
    names = list(G._api().method_names())
    assert names[:len(G.METHODS)] == G.METHODS
    later = {n: G._api().get_method(n).build.__module__ for n in names[len(G.METHODS):]}
    assert all(m.startswith('layoutlab.guidance.plugins.') for m in later.values()), later   # only bundled plug-ins, newer than the fixture
    runs = {k.rsplit('/', 1)[0] for k in golden if not k.startswith('_meta/')}
    assert runs == {f'{m}/{l}' for m in G.METHODS for l in G.LAYOUTS}
    assert all(f'{r}/image' in golden for r in runs)


@pytest.mark.parametrize('method', G.METHODS)
def test_golden(method, pipe, golden):
    expected = {k: v for k, v in golden.items() if k.startswith(f'{method}/')}
    problems = G.compare(expected, G.run_method(pipe, method))
    if problems:
        more = f"\n... and {len(problems) - 40} more" if len(problems) > 40 else ''
        pytest.fail(f"{method}: {len(problems)} golden difference(s) from the fixture:\n" + '\n'.join(problems[:40])
                    + more + f"\nfixture recorded with {_where(golden)}", pytrace=False)


def test_fixtures_cover_every_method_and_name_their_cpu():
    "Every fixture holds every method on every layout and was recorded on the CPU capability it is filed under."
    assert G.FIXTURE.exists()
    for cap, path in G.FIXTURES.items():
        if not path.exists(): continue
        f = G.load_fixture(path)
        assert str(f['_meta/cpu_capability']) == cap, path.name
        assert {k.rsplit('/', 1)[0] for k in f if not k.startswith('_meta/')} == {f'{m}/{l}' for m in G.METHODS for l in G.LAYOUTS}


def test_compare_names_each_difference():
    "The comparison itself (no model): NaN equals NaN, and a change, a missing or extra variable, a dtype are named."
    nan = float('nan')
    a = {'m/l/image': np.zeros((2, 2, 3), np.uint8), 'm/l/energy': np.array([1.0, nan]), 'm/l/stop': np.array([2, 2])}
    assert G.compare(a, {k: v.copy() for k, v in a.items()}) == []
    b = {'m/l/image': a['m/l/image'].copy(), 'm/l/energy': np.array([1.0 + 1e-12, nan]), 'm/l/stop': np.array([2., 2.]), 'm/l/rho': np.ones(2)}
    b['m/l/image'][1, 0, 2] = 1
    p = G.compare(a, b)
    assert len(p) == 4 and all(x.startswith('m/l/') for x in p)
    assert p[0].startswith('m/l/rho: recorded now, not in the fixture')
    assert 'm/l/energy: 1 of 2 values differ; first at (0,)' in p[1]
    assert p[2].startswith('m/l/image: 1 of 12 values differ; first at (1, 0, 2): fixture 0, now 1')
    assert p[3].startswith('m/l/stop: dtype/shape int64[2] in the fixture, float64[2] now')
    assert G.compare(b, a)[0] == 'm/l/rho: in the fixture, not recorded now'
