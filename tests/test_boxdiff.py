"BoxDiff, the bundled plug-in (`nbs/guidance/plugins/boxdiff.ipynb`): its constraints on a case worked by hand, its descent, and `layoutlab generate --method boxdiff`."
import json, math, os, subprocess, sys
from pathlib import Path
from types import SimpleNamespace
import pytest
import torch
import layoutlab
from layoutlab import Layout
from layoutlab.core.record import load_recording
from layoutlab.guidance.plugins.boxdiff import box_terms, smooth, text_maps, BoxDiff, Guidance, METHODS

ROOT = Path(layoutlab.__file__).resolve().parents[1]
CLI = [sys.executable, '-c', 'from layoutlab.ui.cli import app; app(prog_name="layoutlab")']

def hand_case():
    "8×8 map, box on columns 2-5 and rows 1-4 (16 cells); 0.1 outside, 0.3 inside; 0.9, 0.8, 0.7 in the box; 0.5, 0.4 outside it."
    box = torch.zeros(8, 8, dtype=torch.bool); box[1:5, 2:6] = True
    a = torch.full((8, 8), .1); a[box] = .3
    a[2, 3], a[3, 4], a[1, 2] = .9, .8, .7
    a[6, 0], a[7, 7] = .5, .4
    return a[None], box

def test_terms_by_hand():
    t = box_terms(*hand_case())          # P = 0.2: k = 3 in the box (16 cells), 9 outside (48); L = 1
    # inner: 1 - mean of the top 3 in the box
    assert torch.allclose(t['inner'], torch.tensor([1 - (.9 + .8 + .7) / 3]))
    # outer: the top 9 outside are 0.5, 0.4 and seven 0.1s
    assert torch.allclose(t['outer'], torch.tensor([(.5 + .4 + 7 * .1) / 9]))
    # x: column maxima .5 .1 .7 .9 .8 .3 .1 .4 vs the box's 0 0 1 1 1 1 0 0, on columns 1-3 (left edge 2) and 5-7 (right edge 6)
    assert torch.allclose(t['corner_x'], torch.tensor([(.1 + .3 + .1 + .7 + .1 + .4) / 8]))
    # y: row maxima .1 .7 .9 .8 .3 .1 .5 .4 vs 0 1 1 1 1 0 0 0, on rows 0-2 (top edge 1) and 4-6 (bottom edge 5)
    assert torch.allclose(t['corner_y'], torch.tensor([(.1 + .3 + .1 + .7 + .1 + .5) / 8]))

def test_terms_with_other_parameters_and_edges():
    a, box = hand_case()
    t = box_terms(a, box, P=0.5, L=0)      # k = 8 and 24; the bands are the edge columns/rows alone
    assert torch.allclose(t['inner'], torch.tensor([1 - (.9 + .8 + .7 + 5 * .3) / 8]))
    assert torch.allclose(t['outer'], torch.tensor([(.5 + .4 + 22 * .1) / 24]))
    assert torch.allclose(t['corner_x'], torch.tensor([(.3 + .1) / 8])) and torch.allclose(t['corner_y'], torch.tensor([(.3 + .1) / 8]))
    one = torch.zeros(8, 8, dtype=torch.bool); one[0, 0] = True     # k = floor(0.2) = 0 in the authors' code: NaN; here k = 1
    assert box_terms(a, one)['inner'].isfinite().all()
    assert torch.equal(box_terms(a, torch.ones(8, 8, dtype=torch.bool))['outer'], torch.zeros(1))

def test_smoothing_is_the_authors_kernel():
    spike = torch.zeros(1, 5, 5); spike[0, 2, 2] = 1
    k = smooth(spike)[0, 1:4, 1:4]
    g = torch.tensor([math.exp(-1), 1, math.exp(-1)]); want = g[:, None] * g[None]   # exp(-(d / 2σ)²) at σ = 0.5
    assert torch.allclose(k, want / want.sum())

def _state(recording=False):
    return SimpleNamespace(latents=torch.zeros(1, 4, 16, 16), tokens=[[2, 3]], recording=recording,
                           layout=Layout('a red circle', [dict(phrase='red circle', box=[.25, .125, .75, .625])]))

@pytest.mark.parametrize('phrase', ['last', 'mean', 'max'])
def test_energy_falls_after_a_gradient_step(phrase):
    torch.manual_seed(0)
    logits = (0.01 * torch.randn(1, 2, 64, 77)).requires_grad_(True)
    energy = BoxDiff(phrase=phrase)
    E0 = energy({'l': logits.softmax(-1)}, _state(), 25)
    g, = torch.autograd.grad(E0['total'], logits)
    E1 = energy({'l': (logits - 0.05 * g / g.abs().max()).softmax(-1)}, _state(), 25)
    assert E1['total'] < E0['total']
    for k in ('inner', 'outer', 'corner_x', 'corner_y', 'per_object', 'inside'): assert E0[k].shape == (1, 1), k

def test_preset_and_overrides():
    (m,) = METHODS
    seams = m.build(None, {'Guidance': dict(step_scale=0.3, phrase='mean')})
    g = seams['before_step']
    assert type(g) is Guidance and type(g).__name__ == 'Guidance'   # overrides and recordings address it as `Guidance`
    assert (g.update.step_scale, g.energy.phrase, g.guided_steps, g.max_iterations, g.refine_at) == (0.3, 'mean', 25, 1, (0, 10, 20))
    with pytest.raises(ValueError, match='step_scale'): m.build(None, {'Guidance': dict(stepscale=1)})

def test_generate_with_boxdiff(generate_cli):
    rec = generate_cli('boxdiff', '--model', 'shapes', '--param', 'Guidance.refine_iterations=2')
    assert json.loads(rec.attrs['params'])['before_step']['energy'] == 'boxdiff'
    assert rec['boxdiff_inner'].dims == ('step', 'object') and rec.sizes['object'] == 2
    assert int(rec['refine_updates'].isel(step=0)) <= 2
