"""One source of calibrated values: the file shipped per bundled model, read by every preset (issue 22, item 1)."""
import json
import pytest
from layoutlab.core.models import load_pipeline, tiny_pipeline
from layoutlab.guidance import registry
from layoutlab.guidance.registry import (CALIBRATIONS, shipped_calibration, calibrated, preset, methods, tagged,
                                         defaults_table, _described)

BENCH_SEEDS = range(20_000_000, 20_000_000 + 10_000)   # every benchmark, sweep, ablation and Theorem 4.1 layout starts here


@pytest.fixture(scope='module')
def shapes(): return load_pipeline('shapes')


def _grid(name):
    ms = methods(); m = ms[name]
    return m.grid or (ms[m.inherits].grid if m.inherits in ms else None)


def test_the_shipped_file_is_a_calibration_of_disjoint_layouts():
    cal = shipped_calibration('shapes')
    assert cal is not None, f"no calibration shipped in {CALIBRATIONS}"
    assert cal['n'] >= 30 and cal['regime'] in ('away', 'near', 'random')
    assert not set(range(cal['seed0'], cal['seed0'] + cal['n'])) & set(BENCH_SEEDS)
    assert set(cal['calibration']) == set(tagged('calibrate'))        # every calibrated method has its value
    for m, r in cal['report'].items():
        assert r['n'] == cal['n']                                    # every grid point on every calibration layout
        assert r['best'] == r['values'][max(range(len(r['values'])), key=lambda i: r['mean_iou'][i])]
        assert cal['calibration'][m] == {r['piece']: {r['param']: r['best']}}


def test_every_preset_runs_the_files_values(shapes):
    cal = shipped_calibration('shapes')['calibration']
    checked = 0
    for name, m in methods().items():
        want = cal.get(name) or cal.get(m.inherits)
        if not want: continue
        params = preset(name, shapes)[1]
        for piece, vals in want.items():
            for k, v in vals.items():
                assert _described(params, piece, k) == v, (name, piece, k)
                checked += 1
    assert checked >= len(tagged('calibrate')) + 3     # the calibrated methods, plus winwinlay, sali and gradsam by inheritance


def test_a_model_without_a_file_runs_the_authors_values():
    tiny = tiny_pipeline()
    for name in methods():
        g = _grid(name)
        if g is None: continue
        piece, param, _ = g
        default = _described(preset(name, None)[1], piece, param)
        assert _described(preset(name, tiny)[1], piece, param) == default
    assert _described(preset('winwinlay', tiny)[1], 'Guidance', 'r') == 0.06            # WinWinLay's published SNR
    assert _described(preset('ilgd', tiny)[1], 'LossGuidance', 'eta') == 0.32           # iLGD's published η


def test_the_file_is_the_source(shapes, tmp_path, monkeypatch):
    "Change the file, and the presets change with it: no other table holds the values."
    cal = json.loads((CALIBRATIONS/'shapes.json').read_text())
    for m in cal['calibration']:
        piece, param, values = _grid(m)
        cal['calibration'][m] = {piece: {param: values[0] if cal['calibration'][m][piece][param] != values[0] else values[1]}}
    (tmp_path/'shapes.json').write_text(json.dumps(cal))
    monkeypatch.setattr(registry, 'CALIBRATIONS', tmp_path)
    registry.shipped_calibration.cache_clear()
    try:
        for m, vals in cal['calibration'].items():
            (piece, kv), = vals.items()
            (param, v), = kv.items()
            assert _described(preset(m, shapes)[1], piece, param) == v, m
        assert _described(preset('winwinlay', shapes)[1], 'Guidance', 'r') == cal['calibration']['naef_adaptive']['Guidance']['r']
    finally:
        monkeypatch.undo(); registry.shipped_calibration.cache_clear()


def test_an_override_still_wins_and_a_broken_file_is_named(shapes, tmp_path, monkeypatch):
    assert _described(preset('ilgd', shapes, LossGuidance=dict(eta=0.5))[1], 'LossGuidance', 'eta') == 0.5
    (tmp_path/'shapes.json').write_text('{"calibration": ')
    monkeypatch.setattr(registry, 'CALIBRATIONS', tmp_path)
    registry.shipped_calibration.cache_clear()
    try:
        with pytest.raises(ValueError, match=r'shipped calibration .*shapes.json is not valid JSON'):
            preset('ilgd', shapes)
    finally:
        monkeypatch.undo(); registry.shipped_calibration.cache_clear()


def test_the_docs_table_says_which_is_which():
    t = defaults_table()
    cal = shipped_calibration('shapes')['calibration']
    eta = cal['ilgd']['LossGuidance']['eta']
    assert f"| `ilgd` | `LossGuidance.eta` | 0.32 | {eta:g} |" in t
    assert "(as `naef_adaptive`)" in t.split('`winwinlay`')[1].splitlines()[0]


def test_the_editor_shows_the_files_values():
    "The widgets' fields come from the same presets: ShapesSD's calibrated values, a model without a file the authors'."
    from layoutlab.ui.widgets import method_parameters
    cal = shipped_calibration('shapes')['calibration']
    assert method_parameters('naef_backprop', 'shapes')['Guidance']['step_scale'] == cal['naef_backprop']['Guidance']['step_scale'] == 0.03
    assert method_parameters('ilgd', 'shapes')['LossGuidance']['eta'] == cal['ilgd']['LossGuidance']['eta']
    assert method_parameters('winwinlay', 'shapes')['Guidance']['r'] == cal['naef_adaptive']['Guidance']['r']
    assert method_parameters('ilgd', 'tiny-sd15')['LossGuidance']['eta'] == 0.32
