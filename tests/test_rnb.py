"R&B (the bundled plug-in `rnb`): each loss term against a hand-computed case, the energy falls along its gradient, the CLI runs it, named once."
import json, math, os, subprocess, sys
from pathlib import Path
from types import SimpleNamespace
import pytest
import torch
import layoutlab
from layoutlab.core.layout import Layout
from layoutlab.core.record import load_recording
from layoutlab.guidance.plugins.rnb import (minmax, dynamic_threshold, implied_box, region_terms, edges, boundary_term,
                                           phrase_maps, RegionBoundary, st)
from layoutlab.guidance.registry import method_names, get_method, preset

ROOT = Path(layoutlab.__file__).resolve().parents[1]
sig = lambda x: 1 / (1 + math.exp(-x))

def corners():
    "4×4: A = 4 at (0, 0) and (3, 3), 2 at (0, 1) and (1, 0); the target box the top-left 2×2."
    A = torch.zeros(4, 4); A[0, 0] = A[3, 3] = 4.; A[0, 1] = A[1, 0] = 2.
    M = torch.zeros(4, 4); M[:2, :2] = 1
    return A, M

def test_threshold_and_implied_box_by_hand():
    "Â = A/4; mean inside ½, outside 1/12: τ = 0.4·½ + 0.6/12 = 0.25; the four cells above it span the whole grid."
    A, M = corners()
    assert float(dynamic_threshold(minmax(A), M)) == pytest.approx(0.25)
    assert torch.equal(implied_box(minmax(A) > 0.25), torch.ones(4, 4))
    above = torch.zeros(4, 4, dtype=torch.bool); above[1, 2] = above[2, 1] = True     # a one-cell span is kept (cells inclusive)
    want = torch.zeros(4, 4); want[1:3, 1:3] = 1
    assert torch.equal(implied_box(above), want)
    one = torch.zeros(4, 4, dtype=torch.bool); one[3, 0] = True
    assert float(implied_box(one).sum()) == 1.

def test_region_terms_by_hand():
    "IoU 4/16, box share 4/16: box term 1 − ¾·¼; soft term 1 − ½·¾·(σ15 + 2σ5 + σ−5)/(2σ15 + 2σ5 + 12σ−5)."
    A, M = corners()
    r = region_terms(A, M)
    assert float(r['iou']) == pytest.approx(0.25)
    assert float(r['box']) == pytest.approx(1 - .75 * .25)
    assert float(r['soft']) == pytest.approx(1 - .5 * .75 * (sig(15) + 2*sig(5) + sig(-5)) / (2*sig(15) + 2*sig(5) + 12*sig(-5)), abs=1e-6)
    r2 = region_terms(3e-3 * A + 1e-2, M)                 # min-max normalisation: the scale of the map does not matter
    for k in r: assert float(r2[k]) == pytest.approx(float(r[k]), abs=1e-5)

def test_box_term_gradient_is_straight_through():
    "∂/∂Â of 1 − (1−IoU)·|B∩M|/|B| through B: −(1−IoU)·(M/|B| − |B∩M|/|B|²)."
    A, M = corners()
    an = minmax(A).requires_grad_(True)
    b = implied_box(an.detach() > 0.25)
    val = 1 - .75 * (M * st(b * M, an)).sum() / st(b, an).sum()
    assert float(val.detach()) == pytest.approx(1 - .75 * .25)
    g, = torch.autograd.grad(val, an)
    torch.testing.assert_close(g, -.75 * (M / 16 - 4 / 256))

def test_edges_and_boundary_term_by_hand():
    "Left half 1: reflect pad, smooth [c, 1, c]/(1 + 2c) with c = e^(−1/36), Sobel: the middle cells' edges are 4(1 − q) and 4p."
    half = torch.zeros(4, 4); half[:, :2] = 1
    c = math.exp(-1 / 36); p, q = (1 + c) / (1 + 2*c), c / (1 + 2*c)
    torch.testing.assert_close(edges(half), torch.tensor([[4*(1-q), 4*p], [4*(1-q), 4*p]]), atol=1e-4, rtol=0)
    _, M = corners()
    assert float(boundary_term(half, M, torch.tensor(.25))) == pytest.approx(1 - .75 * (1-q) / (2*(1-q) + 2*p), abs=1e-5)
    assert float(edges(torch.ones(5, 5)).max()) < 1e-5   # a flat map has no edges

def toy(logits, n_tokens=10):
    "Two objects on an 8×8 latent; the first phrase's tokens follow `logits`, the second's the logits turned half a turn."
    lay = Layout('a red circle and a blue square', [dict(phrase='red circle', box=[0, 0, .5, .5]), dict(phrase='blue square', box=[.5, .5, 1, 1])])
    state = SimpleNamespace(latents=torch.zeros(1, 4, 8, 8), layout=lay, tokens=[[2, 3], [6, 7]], memory={})
    lg = torch.zeros(1, 2, 64, n_tokens)
    for k in (2, 3): lg[..., k] = logits.reshape(-1)
    for k in (6, 7): lg[..., k] = logits.flip((0, 1)).reshape(-1)
    return {'layer': lg.softmax(-1)}, state

def test_energy_falls_after_a_gradient_step():
    for seed in range(3):
        torch.manual_seed(seed)
        logits = torch.randn(8, 8, requires_grad=True)
        e = RegionBoundary()
        E = e(*toy(logits), 10)
        assert set(E) >= {'total', 'energy', 'per_object', 'inside', 'region', 'boundary', 'iou'}
        assert E['per_object'].shape == (1, 2)
        torch.testing.assert_close(E['per_object'], E['region'] + E['boundary'])
        g, = torch.autograd.grad(E['total'], logits)
        assert float(e(*toy(logits.detach() - .5 * g), 10)['energy']) < float(E['energy'].detach())

def test_placed_objects_add_nothing():
    placed = torch.full((8, 8), -20.); placed[:4, :4] = 5.
    E = RegionBoundary()(*toy(placed.requires_grad_(True)), 10)
    assert float(E['iou'].min()) >= .85 and float(E['energy'].detach()) == 0. and E['total'].requires_grad

def test_phrase_maps_resize_and_average():
    "A 2×2 layer and a 4×4 layer: each resized to 4×4 (bilinear), then averaged; heads averaged first."
    a = torch.rand(1, 2, 4, 3).softmax(-1); b = torch.rand(1, 2, 16, 3).softmax(-1)
    out = phrase_maps({'a': a, 'b': b}, (4, 4))
    ia = torch.nn.functional.interpolate(a.mean(1).transpose(1, 2).reshape(1, 3, 2, 2), size=(4, 4), mode='bilinear')
    torch.testing.assert_close(out, (ia + b.mean(1).transpose(1, 2).reshape(1, 3, 4, 4)) / 2)

def test_preset_and_named_once():
    assert 'rnb' in method_names()
    m = get_method('rnb')
    assert m.grid[:2] == ('Guidance', 'step_scale') and 1.0 in m.grid[2] and m.tags == ('bench', 'calibrate')
    g = preset('rnb', None)[0]['before_step']
    assert (g.update.scale, g.guided_steps, g.max_iterations, g.threshold, g.stop_rule, g.energy.iou_stop) == (70., 10, 5, 0., 'per_step', .85)
    mods = [p.relative_to(ROOT/'layoutlab').as_posix() for p in (ROOT/'layoutlab').rglob('*.py')
            if p.name != '_modidx.py' and "'rnb'" in p.read_text()]
    assert mods == ['guidance/plugins/rnb.py']

def test_cli_generate(generate_cli):
    "`layoutlab generate two-shapes --method rnb --steps 4`: an image, and a recording with the per-term losses."
    rec = generate_cli('rnb')
    ps = json.loads(rec.attrs['params'])['before_step']
    assert ps['piece'] == 'Guidance' and ps['energy'] == 'region_boundary'
    assert all(k in rec for k in ('region_loss', 'boundary_loss', 'box_iou', 'energy'))
    assert float(rec['region_loss'].values[0]) > 0
