"""`theorem41_report` against a recording with planted answers, built here without any helper of `layoutlab.studies.theory`.

Two objects with boxes that are not symmetric under x <-> y, on an 8x8 grid:
- "red circle", box x in [0, .5], y in [0, .25] (rows 0-1, columns 0-3: 8 cells), concentrates: every update moves its
  in-box logits by c * q, so the log-ratio of every in-box pair grows by exactly c * (q_j - q_k) with
  c = beta * inside * (1 - inside), Theorem 4.1's update (slope of the gain against (1 - inside)(q_j - q_k): beta * inside);
- "blue square", box x in [.625, 1], y in [.25, .75] (rows 2-5, columns 5-7: 12 cells), spreads: its in-box logits move
  by -gamma * q, the gains are exactly -gamma * (q_j - q_k) (slope -gamma / (1 - inside)).
Each object's in-box share `inside` is planted too (different per object, changing over iterations and steps), so
the (1 - inside) factor, the coverage exp(H)/cells of the in-box part, and which object is which can all be checked
against numbers known before the report runs. `tests/mutate_theory.py` breaks `theory.py` in the ways these tests
must catch.
"""
import json, math, warnings
import numpy as np
import pytest
import xarray as xr
from layoutlab.studies.theory import theorem41_report

H = W = 8
STEPS, ITERATIONS = 5, 3                                  # ITERATIONS inner updates: ITERATIONS + 1 maps per step
OBJECTS = ('red circle', 'blue square')
BOXES = {'red circle': [0.0, 0.0, 0.5, 0.25], 'blue square': [0.625, 0.25, 1.0, 0.75]}
BETA, GAMMA = 6.0, 0.8                                    # concentration of the circle, spreading of the square
BETA_ACROSS, GAMMA_ACROSS = 3.0, 0.5                      # the same from step to step
TEXT = ['<|startoftext|>', 'a</w>', 'red</w>', 'circle</w>', 'and</w>', 'a</w>', 'blue</w>', 'square</w>', '<|endoftext|>']
TOKENS = {'red circle': [2, 3], 'blue square': [6, 7]}
ENERGY_LAYERS = ['mid_block.attentions.0.transformer_blocks.0.attn2', 'up_blocks.1.attentions.0.transformer_blocks.0.attn2']
OTHER_LAYERS = ['down_blocks.2.attentions.0.transformer_blocks.0.attn2', 'up_blocks.2.attentions.0.transformer_blocks.0.attn2']

def box_cells(box, h=H, w=W):
    "Cells whose centres lie in the box [x0, y0, x1, y1]: rows from y, columns from x (plain numpy)."
    x0, y0, x1, y1 = box
    ys, xs = (np.arange(h) + .5) / h, (np.arange(w) + .5) / w
    return ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]

def inside_inner(o, s, k): return (0.45 + 0.04 * k + 0.02 * s) if o == 0 else (0.30 - 0.02 * k + 0.01 * s)
def inside_across(o, s): return (0.40 + 0.05 * s) if o == 0 else (0.35 - 0.03 * s)

def softmax(u): e = np.exp(u - u.max()); return e / e.sum()

def compose(q, inside, mask, out):
    "A map with `inside` of its mass in the box, spread there as q, and 1 - inside spread outside as out."
    a = np.zeros(mask.shape)
    a[mask] = inside * q; a[~mask] = (1 - inside) * out
    return a

def planted(seed=0):
    "The planted in-box distributions, insides and per-transition constants, for both parts of the report."
    rng = np.random.default_rng(seed)
    masks = [box_cells(BOXES[p]) for p in OBJECTS]
    outs = [softmax(rng.normal(size=(~m).sum())) for m in masks]
    u0 = [rng.normal(size=m.sum()) * 1.5 for m in masks]
    inner_q = np.empty((STEPS, ITERATIONS + 1, 2), object); inner_c = np.empty((STEPS, ITERATIONS, 2))
    across_q = np.empty((STEPS, 2), object); across_c = np.empty((STEPS - 1, 2))
    for o in range(2):
        u = u0[o].copy()
        for s in range(STEPS):
            across_q[s, o] = softmax(u)
            w = u.copy()
            for k in range(ITERATIONS + 1):
                inner_q[s, k, o] = softmax(w)
                if k == ITERATIONS: break
                i = inside_inner(o, s, k)
                c = BETA * i * (1 - i) if o == 0 else -GAMMA
                inner_c[s, k, o] = c; w = w + c * softmax(w)
            if s < STEPS - 1:
                i = inside_across(o, s)
                c = BETA_ACROSS * i * (1 - i) if o == 0 else -GAMMA_ACROSS
                across_c[s, o] = c; u = u + c * softmax(u)
    return dict(masks=masks, outs=outs, inner_q=inner_q, inner_c=inner_c, across_q=across_q, across_c=across_c)

def make_recording(seed=0, dtype=np.float32):
    "A recording (the layout of the CLI's JSON, guidance_attention, one attention group) holding the planted maps."
    P, rng = planted(seed), np.random.default_rng(seed + 1)
    masks, outs = P['masks'], P['outs']
    ga = np.array([[[compose(P['inner_q'][s, k, o], inside_inner(o, s, k), masks[o], outs[o]) for o in range(2)]
                    for k in range(ITERATIONS + 1)] for s in range(STEPS)])            # (step, iteration, object, y, x)
    att = np.array([[compose(P['across_q'][s, o], inside_across(o, s), masks[o], outs[o]) for o in range(2)]
                    for s in range(STEPS)])                                            # (step, object, y, x)
    layers = ENERGY_LAYERS + OTHER_LAYERS
    tok = np.empty((STEPS, len(layers), len(TEXT), H, W))
    tok[:] = rng.dirichlet(np.ones(H * W), size=tok.shape[:3]).reshape(tok.shape)    # other tokens and layers: noise
    for o, p in enumerate(OBJECTS):
        # the energy's two layers and the phrase's two tokens differ, zero-sum, so that only their mean is the planted map
        for li, sl in enumerate((+1, -1)):
            for ti, st in enumerate((+1, -1)):
                d = 0.2 * att[:, o] * (sl * np.cos(np.arange(H * W)).reshape(H, W) + st * np.sin(np.arange(H * W)).reshape(H, W))
                tok[:, li, TOKENS[p][ti]] = att[:, o] + d
    lay = dict(prompt='a red circle and a blue square', seed=seed,
               objects=[dict(phrase=p, box=BOXES[p]) for p in OBJECTS])
    attrs = dict(layout=json.dumps(lay), method='synthetic-planted', params='{}', seed=seed)
    root = xr.Dataset(dict(guidance_attention=(('step', 'iteration', 'object', 'att_y', 'att_x'), ga.astype(dtype))),
                      coords=dict(step=np.arange(STEPS), timestep=('step', np.linspace(999, 1, STEPS))), attrs=attrs)
    grid = xr.Dataset(dict(attention=(('step', 'layer', 'token', 'y', 'x'), tok.astype(dtype))),
                      coords=dict(layer=layers, token=np.arange(len(TEXT)), token_text=('token', TEXT),
                                  y=(np.arange(H) + .5) / H, x=(np.arange(W) + .5) / W))
    return xr.DataTree.from_dict({'/': root, f'attention_{H}x{W}': grid}), P

def pair_diffs(q):
    "q_j - q_k over every ordered pair with q_j > q_k."
    return np.array([q[j] - q[k] for j in range(len(q)) for k in range(len(q)) if q[j] > q[k]])

def entropy(q): return -sum(x * math.log(x) for x in q)

@pytest.fixture(scope='module')
def planted_report():
    rec, P = make_recording()
    with warnings.catch_warnings():
        warnings.simplefilter('error')                    # a float32 recording gives no warning
        rep = theorem41_report(rec)
    return rep, P

def test_boxes_are_not_transpose_symmetric():
    for p in OBJECTS:
        m = box_cells(BOXES[p]); assert (m != m.T).any()
    assert box_cells(BOXES['red circle']).sum() == 8 and box_cells(BOXES['blue square']).sum() == 12
    assert not (box_cells(BOXES['red circle']) & box_cells(BOXES['blue square'])).any()

def test_report_keeps_objects_apart(planted_report):
    rep, _ = planted_report
    assert list(rep.object.values) == list(OBJECTS)
    circle, square = rep.sel(object='red circle'), rep.sel(object='blue square')
    assert (circle.log_ratio_gain > 0).all() and (square.log_ratio_gain < 0).all()
    assert float(circle.gain_positive.min()) == 1.0 and float(square.gain_positive.max()) == 0.0
    assert (circle.across_log_ratio_gain[:-1] > 0).all() and (square.across_log_ratio_gain[:-1] < 0).all()

@pytest.mark.parametrize('part', ['inner', 'across'])
def test_inside_and_coverage_recovered(planted_report, part):
    rep, P = planted_report
    for o, p in enumerate(OBJECTS):
        r = rep.sel(object=p)
        cells = P['masks'][o].sum()
        for s in range(STEPS):
            for k in (range(ITERATIONS + 1) if part == 'inner' else [None]):
                q = P['inner_q'][s, k, o] if part == 'inner' else P['across_q'][s, o]
                i = inside_inner(o, s, k) if part == 'inner' else inside_across(o, s)
                at = r.isel(step=s, iteration=k) if part == 'inner' else r.isel(step=s)
                pre = '' if part == 'inner' else 'across_'
                top = np.sort(q)[::-1][:math.ceil(0.1 * cells)].sum()
                np.testing.assert_allclose(float(at[pre + 'inside']), i, rtol=1e-5, err_msg=f'{p} inside s{s} k{k}')
                np.testing.assert_allclose(float(at[pre + 'inbox_entropy']), entropy(q), rtol=1e-5, err_msg=f'{p} entropy s{s} k{k}')
                np.testing.assert_allclose(float(at[pre + 'coverage']), math.exp(entropy(q)) / cells, rtol=1e-5, err_msg=f'{p} coverage s{s} k{k}')
                np.testing.assert_allclose(float(at[pre + 'top_share']), top, rtol=1e-5, err_msg=f'{p} top share s{s} k{k}')

@pytest.mark.parametrize('part', ['inner', 'across'])
def test_gains_recovered(planted_report, part):
    "Δ = c (q_j - q_k) by construction: its mean, the prediction (1 - inside)(q_j - q_k), slope, correlation, orders."
    rep, P = planted_report
    for o, p in enumerate(OBJECTS):
        r = rep.sel(object=p)
        for s in range(STEPS if part == 'inner' else STEPS - 1):
            for k in (range(ITERATIONS) if part == 'inner' else [None]):
                q, c = (P['inner_q'][s, k, o], P['inner_c'][s, k, o]) if part == 'inner' else (P['across_q'][s, o], P['across_c'][s, o])
                i = inside_inner(o, s, k) if part == 'inner' else inside_across(o, s)
                at = r.isel(step=s, transition=k) if part == 'inner' else r.isel(step=s)
                pre = '' if part == 'inner' else 'across_'
                d = pair_diffs(q)
                assert int(at[pre + 'n_pairs']) == len(d) == len(q) * (len(q) - 1) // 2
                np.testing.assert_allclose(float(at[pre + 'log_ratio_gain']), c * d.mean(), rtol=1e-4, err_msg=f'{p} gain s{s} k{k}')
                np.testing.assert_allclose(float(at[pre + 'predicted_gain']), (1 - i) * d.mean(), rtol=1e-5, err_msg=f'{p} predicted s{s} k{k}')
                np.testing.assert_allclose(float(at[pre + 'slope']), c / (1 - i), rtol=1e-3, err_msg=f'{p} slope s{s} k{k}')
                if o == 0: np.testing.assert_allclose(float(at[pre + 'slope']), (BETA if part == 'inner' else BETA_ACROSS) * i, rtol=1e-3)
                np.testing.assert_allclose(float(at[pre + 'gain_corr']), 1.0 if c > 0 else -1.0, atol=1e-4)
                assert float(at[pre + 'order_kept']) == 1.0 and float(at[pre + 'gain_positive']) == (1.0 if c > 0 else 0.0)
    if part == 'across': assert rep.across_log_ratio_gain.isel(step=-1).isnull().all()   # the last step has no successor

def test_float16_recording_warns():
    rec32, _ = make_recording()
    rec16, _ = make_recording(dtype=np.float16)
    with pytest.warns(UserWarning, match='float16'):
        rep16 = theorem41_report(rec16)
    rep32 = theorem41_report(rec32)
    assert rep16.attrs['attention_dtype'] == 'float16' and rep32.attrs['attention_dtype'] == 'float32'
    # what the warning is about: float16 moves the across-step statistics well beyond float32's
    err16 = abs(float(rep16.across_log_ratio_gain[0, 0]) / float(rep32.across_log_ratio_gain[0, 0]) - 1)
    assert err16 > 1e-4
