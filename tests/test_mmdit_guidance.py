"MMDiT recordings through the analysis tools: the browser, Theorem 4.1's report, and a `.nc` round trip, on tiny SD3 and FLUX."
import os
os.environ.setdefault('OMP_NUM_THREADS', '1')
import numpy as np, pytest, xarray as xr
from layoutlab.core.models import tiny_pipeline
from layoutlab.core.layout import Layout
from layoutlab.core.record import Recorder, load_recording
from layoutlab.guidance.registry import sample
from layoutlab.studies.theory import theorem41_report
from layoutlab.studies.theorem41 import run_summary
from layoutlab.ui.widgets import RecordingBrowser
from layoutlab import plots

SIZES = {'sd3': (32, 8), 'flux': (64, 16)}   # image side, attention grid side (latent/8, then 2×2 patches)
LAYOUT = Layout('a red circle and a blue square', [dict(phrase='red circle', box=[0.1, 0.1, 0.5, 0.5]),
                                                   dict(phrase='blue square', box=[0.5, 0.5, 0.9, 0.9])], seed=0)

@pytest.fixture(scope='module', params=['sd3', 'flux'])
def run(request):
    side, grid = SIZES[request.param]
    res = sample(tiny_pipeline(request.param), LAYOUT, 'winwinlay', steps=3, height=side, width=side,
                 recorder=Recorder(float16=False), progress=False)
    return request.param, grid, res

def test_grid_is_the_image_grid(run):
    kind, grid, res = run
    groups = plots.attention_groups(res.recording)
    assert groups == [f'attention_{grid}x{grid}'], groups
    assert res.recording['guidance_attention'].shape[-2:] == (grid, grid)

def test_browser_shows_image_grid_maps(run):
    kind, grid, res = run
    b = RecordingBrowser(res.recording, res.image)
    b.step.value = 0                                   # redraw one step
    assert [w for w, *_ in b.timings] == ['step']
    assert '⚠' not in b.info.value
    slots = [(r, name, j) for _, r, name, j in b._map_slots if name is not None]
    assert any(name == 'guidance_attention' for _, name, _ in slots)
    for r, name, j in slots:
        v, _ = plots._at_step(r, name, 0, b._it())
        if {'att_y', 'att_x'} <= set(v.dims): assert (v.sizes['att_y'], v.sizes['att_x']) == (grid, grid)
    shown = [ax.images[-1].get_array() for ax, r, name, j in b._map_slots if name == 'guidance_attention']
    assert shown and all(np.shape(a) == (grid, grid) for a in shown)
    # the attention panel's map is the recorded group's, on the image grid
    a = plots.attention_groups(b.rec)[0]
    assert (b.rec[a].sizes['y'], b.rec[a].sizes['x']) == (grid, grid)

def test_theorem41_report_is_finite(run):
    kind, grid, res = run
    rep = theorem41_report(res.recording)
    assert rep.sizes['object'] == 2 and rep.sizes['step'] == 3
    for k in ('inside', 'coverage', 'log_ratio_gain', 'order_kept', 'across_inside', 'across_coverage'):
        v = rep[k].values
        assert np.isfinite(v).any(), k
        assert np.isfinite(v[~np.isnan(v)]).all(), k
    s = run_summary(rep, res.image, LAYOUT, guided=2)
    for k in ('order_kept', 'log_ratio_gain', 'gain_positive', 'coverage_guided_end', 'inside_guided_end'):
        assert np.isfinite(s[k]), (k, s[k])

def test_nc_round_trip(run, tmp_path):
    kind, grid, res = run
    side = SIZES[kind][0]
    path = tmp_path / f'{kind}.nc'
    mem = sample(tiny_pipeline(kind), LAYOUT, 'layout_control', steps=3, height=side, width=side,
                 recorder=Recorder(float16=False), progress=False).recording
    sample(tiny_pipeline(kind), LAYOUT, 'layout_control', steps=3, height=side, width=side,
           recorder=Recorder(path, float16=False), progress=False)
    disk = load_recording(path)
    assert sorted(disk.children) == sorted(mem.children)
    xr.testing.assert_allclose(disk.to_dataset(inherit=False).compute(), mem.to_dataset(inherit=False).compute())
    for g in mem.children:
        xr.testing.assert_allclose(disk[g].to_dataset(inherit=False).compute(), mem[g].to_dataset(inherit=False).compute())
    assert disk[f'attention_{grid}x{grid}'].attention.shape[-2:] == (grid, grid)
    for k in ('method', 'layout', 'prompt', 'model', 'seed'):
        if k in mem.attrs: assert str(disk.attrs[k]) == str(mem.attrs[k]), k

@pytest.mark.parametrize('kind', ['sd3', 'flux'])
def test_browser_non_square(kind):
    "A wide image (twice as wide as high): a transposed grid would show up as the wrong shape."
    side, grid = SIZES[kind]
    res = sample(tiny_pipeline(kind), LAYOUT, 'layout_control', steps=3, height=side, width=2 * side,
                 recorder=Recorder(float16=False), progress=False)
    assert plots.attention_groups(res.recording) == [f'attention_{grid}x{2 * grid}']
    g = res.recording[f'attention_{grid}x{2 * grid}']
    assert (g.sizes['y'], g.sizes['x']) == (grid, 2 * grid)
    b = RecordingBrowser(res.recording, res.image)
    b.step.value = 1
    shown = [ax.images[-1].get_array() for ax, r, name, j in b._map_slots if name == 'guidance_attention']
    assert shown and all(np.shape(a) == (grid, 2 * grid) for a in shown)
    assert res.recording['guidance_attention'].shape[-2:] == (grid, 2 * grid)
