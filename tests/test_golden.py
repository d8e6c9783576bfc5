"""Golden regression: every method preset on three shipped layouts gives the images and recorded scalars of
`tests/golden/presets.npz` bit for bit (recorded by `tests/golden/make_golden.py` before the module refactor).

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
def golden(): return G.load_fixture()


def _where(golden)->str:
    "The recording environment of the fixture next to today's, for a failure message."
    now = G.environment()
    return '; '.join(f"{k} {golden[f'_meta/{k}']} (now {now[k]})" for k in now if f'_meta/{k}' in golden)


def test_fixture_covers_every_method(golden):
    assert list(G._api().method_names()) == G.METHODS
    runs = {k.rsplit('/', 1)[0] for k in golden if not k.startswith('_meta/')}
    assert runs == {f'{m}/{l}' for m in G.METHODS for l in G.LAYOUTS}
    assert all(f'{r}/image' in golden for r in runs)


@pytest.mark.parametrize('method', G.METHODS)
def test_golden(method, pipe, golden):
    expected = {k: v for k, v in golden.items() if k.startswith(f'{method}/')}
    problems = G.compare(expected, G.run_method(pipe, method))
    if problems:
        more = f"\n... and {len(problems) - 40} more" if len(problems) > 40 else ''
        pytest.fail(f"{method}: {len(problems)} golden difference(s) from tests/golden/presets.npz:\n" + '\n'.join(problems[:40])
                    + more + f"\nfixture recorded with {_where(golden)}", pytrace=False)


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
