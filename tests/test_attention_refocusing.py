"Attention Refocusing (the bundled plug-in `attention_refocusing`): each loss term against a hand-computed case, the energy falls along its gradient, the CLI runs it, named once."
import json, math, os, subprocess, sys
from pathlib import Path
from types import SimpleNamespace
import pytest
import torch
import layoutlab
from layoutlab.core.layout import Layout
from layoutlab.core.record import load_recording
from layoutlab.guidance.plugins.attention_refocusing import (token_maps, smooth, piecewise, cross_terms, self_term,
                                                            authors_schedule, Refocus)
from layoutlab.guidance.registry import method_names, get_method, preset

ROOT = Path(layoutlab.__file__).resolve().parents[1]

def boxes():
    "4×4: the object's box the top-left 2×2, the other object's the bottom-right 2×2."
    M = torch.zeros(4, 4); M[:2, :2] = 1
    O = torch.zeros(1, 4, 4); O[0, 2:, 2:] = 1
    return M, O

def test_cross_terms_by_hand():
    "Max 0.15 inside (middle band): fg 0.85; 0.3 in the other box (> 0.15): 4·0.3; 0.08 in the background: ½·0.08."
    M, O = boxes()
    m = torch.zeros(4, 4); m[0, 0], m[3, 3], m[0, 3] = .15, .3, .08
    r = cross_terms(m, M, O, early=False)
    assert float(r['fg']) == pytest.approx(.85) and float(r['other']) == pytest.approx(1.2)
    assert float(r['bg']) == pytest.approx(.04) and float(r['max_in']) == pytest.approx(.15)
    m2 = m.clone(); m2[0, 0] = .05                      # below 0.1 inside: weight 6
    assert float(cross_terms(m2, M, O, False)['fg']) == pytest.approx(6 * .95)
    m3 = m.clone(); m3[0, 0] = .25                      # above 0.2 inside: counts only early
    assert float(cross_terms(m3, M, O, False)['fg']) == 0. and float(cross_terms(m3, M, O, True)['fg']) == pytest.approx(.75)
    m4 = m.clone(); m4[3, 3] = .12                      # between 0.1 and 0.15 in the other box: weight 1
    assert float(cross_terms(m4, M, O, False)['other']) == pytest.approx(.12)
    m5 = m.clone(); m5[3, 3] = .05                      # below 0.1 there: only early
    assert float(cross_terms(m5, M, O, False)['other']) == 0. and float(cross_terms(m5, M, O, True)['other']) == pytest.approx(.05)
    assert float(cross_terms(m, M, torch.zeros(0, 4, 4), False)['bg']) == pytest.approx(.15)   # one object: the other box is background

def test_own_box_is_not_other():
    "A peak in the object's own box that the other box overlaps is not penalised as 'other'."
    M, _ = boxes()
    O = torch.zeros(1, 4, 4); O[0, :2, :3] = 1
    m = torch.zeros(4, 4); m[0, 0] = .5
    assert float(cross_terms(m, M, O, False)['other']) == 0.

def test_smooth_and_normalisation_by_hand():
    "A unit spike at the centre of a 3×3 map keeps (1/(1 + 2c))², c = e^(−(1/(2·0.5))²) = e^(−1); its edge neighbour, reflected, 2c/(1 + 2c)²."
    c = math.exp(-1); s = torch.zeros(3, 3); s[1, 1] = 1
    assert float(smooth(s)[1, 1]) == pytest.approx(1 / (1 + 2*c)**2)
    assert float(smooth(s)[0, 1]) == pytest.approx(2 * c / (1 + 2*c)**2)   # reflect padding: row −1 is row 1, the spike counted twice
    a = torch.zeros(1, 1, 77); a[..., 3] = .01          # token 3 beats the other 74 by 0.01: a factor e after ×100
    t = token_maps(a)
    assert t.shape == (1, 1, 75) and float(t[0, 0, 2]) == pytest.approx(math.e / (math.e + 74))

def test_self_term_by_hand():
    "Box the top-left 2×2: query 0 attends to itself only, queries 1, 4, 5 uniformly (12/16 outside): (0 + 3·¾)/4."
    M, _ = boxes()
    P = torch.full((1, 16, 16), 1 / 16); P[0, 0] = 0; P[0, 0, 0] = 1
    assert float(self_term(P, M)) == pytest.approx(3 * .75 / 4)
    P2 = torch.cat([P, torch.eye(16)[None]])              # a second head attending to itself only: 0; heads averaged
    assert float(self_term(P2, M)) == pytest.approx(3 * .75 / 8)

def test_schedule():
    assert [authors_schedule(j) for j in (0, 1, 2, 4, 5, 9, 10, 11, 15, 20, 25, 35, 36, 49)] == \
        [(4., 2), (4., 2), (4., 6), (4., 6), (3., 3), (3., 3), (3., 2), (0., 0), (3., 2), (1., 2), (1., 2), (1., 2), (0., 0), (0., 0)]

def toy(logits, self_logits, i=0):
    "Two objects on an 8×8 latent; a cross layer whose phrase tokens follow `logits` (the second's turned half a turn), a self layer."
    lay = Layout('a red circle and a blue square', [dict(phrase='red circle', box=[0, 0, .5, .5]), dict(phrase='blue square', box=[.5, .5, 1, 1])])
    state = SimpleNamespace(latents=torch.zeros(1, 4, 8, 8), layout=lay, tokens=[[2, 3], [6, 7]], memory={}, i=i, n_steps=50)
    lg = torch.zeros(1, 1, 64, 77); lg[..., 0] = .05
    for k in (2, 3): lg[..., k] = logits.reshape(-1) / 50
    for k in (6, 7): lg[..., k] = logits.flip((0, 1)).reshape(-1) / 50
    return {'x.attn2': lg.softmax(-1), 'x.attn1': self_logits.softmax(-1)[None, None]}, state

def test_energy_falls_after_a_gradient_step():
    for seed in range(3):
        torch.manual_seed(seed)
        lg, sl = torch.randn(8, 8, requires_grad=True), torch.randn(64, 64, requires_grad=True)
        E = Refocus()(*toy(lg, sl), 10)
        assert set(E) >= {'total', 'energy', 'per_object', 'inside', 'cross', 'self', 'max_in'}
        assert E['per_object'].shape == (1, 2)
        torch.testing.assert_close(E['per_object'], 4. * (E['cross'] + E['self']))    # step 0: the authors' loss scale 4
        g1, g2 = torch.autograd.grad(E['total'], (lg, sl))
        assert float(Refocus()(*toy(lg.detach() - 20 * g1, sl.detach() - 20 * g2), 10)['energy']) < float(E['energy'].detach())

def test_gate():
    "The schedule's iterations per step, and 'every max inside ≥ 0.2', make the energy read 0."
    torch.manual_seed(0)
    maps, state = toy(torch.randn(8, 8), torch.randn(64, 64))
    e = Refocus()
    assert [float(e(maps, state, 10)['energy']) > 0 for _ in range(3)] == [True, True, False]
    state.i = 1; assert float(e(maps, state, 10)['energy']) > 0                  # a new step: its own iterations
    assert float(Refocus()(*toy(torch.randn(8, 8), torch.randn(64, 64), i=12), 10)['energy']) == 0.
    placed = torch.full((8, 8), -500.); placed[:4, :4] = 500.
    assert float(Refocus()(*toy(placed, torch.randn(64, 64)), 10)['energy']) == 0.

def test_preset_and_named_once():
    assert 'attention_refocusing' in method_names()
    m = get_method('attention_refocusing')
    assert m.grid[:2] == ('Guidance', 'step_scale') and 1.0 in m.grid[2] and m.tags == ('bench', 'calibrate')
    g = preset('attention_refocusing', None)[0]['before_step']
    assert (g.update.scale, g.layers, g.max_iterations, g.threshold, g.stop_rule, g.energy.temperature, g.energy.enough) == \
        (1., '*attn*', 6, .1, 'per_step', 100., .2)
    mods = [p.relative_to(ROOT/'layoutlab').as_posix() for p in (ROOT/'layoutlab').rglob('*.py')
            if p.name != '_modidx.py' and "'attention_refocusing'" in p.read_text()]
    assert mods == ['guidance/plugins/attention_refocusing.py']

def test_cli_generate(generate_cli):
    "`layoutlab generate two-shapes --method attention_refocusing --steps 4`: an image, and a recording with the terms."
    rec = generate_cli('attention_refocusing')
    ps = json.loads(rec.attrs['params'])['before_step']
    assert ps['piece'] == 'Guidance' and ps['energy'] == 'refocus'
    assert all(k in rec for k in ('cross_loss', 'self_loss', 'max_inside', 'loss_scale', 'energy'))
    assert float(rec['cross_loss'].values[0]) > 0 and float(rec['loss_scale'].values[0]) == 4.
