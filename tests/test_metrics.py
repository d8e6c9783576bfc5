"Edge cases of layoutlab.core.metrics that would clutter the notebook."
import math
from types import SimpleNamespace
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from layoutlab.shapes.world import ShapeObject, scene
from layoutlab.core.layout import LayoutObject
from layoutlab.core.metrics import box_iou, match, layout_iou, presence, presence_totals, coco_ap, frechet_from_stats, frechet_distance, box_coverage, binding_share, binding_ratios, AttentionProbe, object_kind
from layoutlab.shapes.judge import load_features, features, FEATURES_DIR, LABELS, scene_labels

coord = st.floats(0, 1, allow_nan=False)

@st.composite
def boxes(draw):
    x0, x1 = sorted([draw(coord), draw(coord)]); y0, y1 = sorted([draw(coord), draw(coord)])
    return [x0, y0, x1, y1]

def obj(c, s, box, score=1.0): return ShapeObject(c, s, tuple(box), score)

# --- boxes and matching ---------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(boxes(), boxes())
def test_box_iou_properties(a, b):
    v = box_iou(a, b)
    assert 0 <= v <= 1 + 1e-12
    assert v == pytest.approx(box_iou(b, a))
    if (a[2] - a[0]) * (a[3] - a[1]) > 0: assert box_iou(a, a) == pytest.approx(1.)

def test_box_iou_degenerate_and_broadcast():
    assert box_iou([.2, .2, .2, .5], [.2, .2, .2, .5]) == 0.  # zero area: no NaN
    out = box_iou(np.zeros((3, 1, 4)) + [0, 0, .5, .5], np.zeros((1, 2, 4)) + [0, 0, 1, 1])
    assert out.shape == (3, 2) and np.allclose(out, .25)

def test_match_unequal_counts_and_kinds():
    truth = [obj('red', 'circle', [0, 0, .2, .2]), obj('red', 'circle', [.5, .5, .7, .7])]
    pred = [obj('red', 'circle', [.5, .5, .7, .7]), obj('red', 'circle', [.52, .5, .72, .7]), obj('red', 'circle', [0, 0, .2, .2])]
    m = match(pred, truth)
    assert [(i, j) for i, j, _ in m] == [(2, 0), (0, 1)]  # the best of the two candidates for the second truth
    assert match(pred[:1], truth) == [(0, 1, 1.0)]          # one prediction, two truths: goes to the overlapping one
    assert match([obj('red', 'square', [0, 0, .2, .2])], truth) == []  # other shape: no match
    assert match([obj('blue', 'circle', [0, 0, .2, .2])], truth) == []  # other colour: no match

def test_match_keeps_zero_iou_pairs():
    # the object is present but misplaced: matched (presence) with IoU 0 (placement)
    m = match([obj('red', 'circle', [.8, .8, 1, 1])], [obj('red', 'circle', [0, 0, .2, .2])])
    assert m == [(0, 0, 0.0)]

def test_layout_objects_and_shape_objects_compare():
    req = [LayoutObject('red circle', (0, 0, .5, .5)), LayoutObject('big blue square', (.5, .5, 1, 1))]
    det = [obj('blue', 'square', [.5, .5, 1, 1])]
    assert object_kind(req[1]) == ('blue', 'square')
    r = layout_iou(det, req)
    assert r['ious'] == [0., 1.] and r['mean'] == .5
    assert math.isnan(layout_iou(det, [])['mean'])

# --- presence -------------------------------------------------------------------------------------------

def test_presence_empty_cases():
    t = [obj('red', 'circle', [0, 0, .2, .2])]
    p = presence([], t)
    assert p['recall'] == 0 and math.isnan(p['precision']) and p['spurious'] == 0
    p = presence(t + t, t)  # a duplicate is spurious
    assert p['recall'] == 1 and p['spurious'] == 1 and p['spurious_rate'] == .5
    tot = presence_totals([presence([], t), presence(t, t)])
    assert tot['recall'] == .5 and tot['precision'] == 1.

# --- COCO AP --------------------------------------------------------------------------------------------

def _world(n=10, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x, y = rng.uniform(0, .7, 2)
        out.append([obj('red', 'circle', [x, y, x + .25, y + .25])])
    return out

def test_coco_ap_edge_cases():
    truths = _world()
    assert all(math.isnan(v) for v in coco_ap([[] for _ in truths], [[] for _ in truths]).values())
    with pytest.raises(ValueError): coco_ap(truths[:2], truths)
    # a spurious object of a kind absent from the ground truth is ignored by COCO (presence sees it)
    extra = [t + [obj('green', 'square', [.8, .8, .95, .95], .99)] for t in truths]
    assert coco_ap(extra, truths) == dict(AP=1., AP50=1.)

def test_coco_ap_ranks_by_score():
    truths = _world()
    # a confident false positive of the same kind in every image: precision 1/2 at every recall
    fp = [[obj('red', 'circle', [.9, .9, 1, 1], .99)] + [obj(o.color, o.shape, o.box, .5) for o in t] for t in truths]
    ap = coco_ap(fp, truths)
    assert ap['AP50'] == pytest.approx(.5) and ap['AP'] == pytest.approx(.5)  # precision 10/20 at full recall
    # the same false positives with a lower score than every true positive do not hurt
    fp_low = [[obj('red', 'circle', [.9, .9, 1, 1], .1)] + [obj(o.color, o.shape, o.box, .5) for o in t] for t in truths]
    assert coco_ap(fp_low, truths)['AP50'] == pytest.approx(1.)

def test_coco_ap_on_real_scenes_is_perfect():
    truths = [scene(s).objects for s in range(30)]
    assert coco_ap(truths, truths) == dict(AP=1., AP50=1.)

# --- Fréchet distance -----------------------------------------------------------------------------------

def test_frechet_properties():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 4)), rng.normal(size=(300, 4)) * 2 + 1
    assert frechet_distance(a, a) == pytest.approx(0., abs=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    assert frechet_distance(a, a + [3, 0, 0, 0]) == pytest.approx(9., rel=1e-6)  # a shift only moves the mean

def test_frechet_singular_covariance_is_finite():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 20)), rng.normal(size=(6, 20))  # fewer samples than dimensions
    v = frechet_distance(a, b)
    assert np.isfinite(v) and v > 0
    z = np.zeros((3, 3))
    assert frechet_from_stats(np.zeros(3), z, np.ones(3), z) == pytest.approx(3.)

# --- binding --------------------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(boxes(), st.integers(1, 12), st.integers(1, 12))
def test_box_coverage_sums_to_area(b, h, w):
    cov = box_coverage(b, h, w)
    assert cov.shape == (h * w,) and cov.min() >= 0 and cov.max() <= 1 + 1e-9
    assert cov.sum() / (h * w) == pytest.approx((b[2] - b[0]) * (b[3] - b[1]), abs=1e-9)

def test_binding_uniform_is_one_at_any_grid():
    box = [.13, .27, .61, .55]
    for n in (4, 8, 16):
        m = np.full((n * n, 77), 1 / 77)
        r = binding_ratios({'x': m}, [[2, 3]], [box])
        assert np.allclose(r[0], 1.)

def test_probe_counts_only_first_steps_and_keeps_scores():
    probe = AttentionProbe(n_steps=2)
    s = torch.randn(2, 4, 16, 77)
    for i in range(5):
        out = probe('layer', s * (i + 1), SimpleNamespace(i=i))
        assert out is not None and torch.equal(out, s * (i + 1))
    assert probe.counts['layer'] == 2
    want = ((s[1:] * 1).softmax(-1).mean((0, 1)) + (s[1:] * 2).softmax(-1).mean((0, 1))) / 2
    assert np.allclose(probe.maps['layer'], want.numpy(), atol=1e-6)

# --- the shipped feature network ------------------------------------------------------------------------

def test_feature_weights_ship_small_and_load_offline():
    f = FEATURES_DIR/'features.safetensors'
    assert f.exists() and f.stat().st_size < 1_000_000
    net = load_features()
    assert not net.training and net.config['n_labels'] == len(LABELS)

def test_features_accept_arrays_pil_and_other_sizes():
    im = scene(3).image
    a = features([im]); b = features([Image.fromarray(im)]); c = features(im[None])
    assert a.shape == (1, load_features().config['dim']) and np.allclose(a, b) and np.allclose(a, c)
    assert features([np.asarray(Image.fromarray(im).resize((32, 32)))]).shape == a.shape
    assert features([]).shape == (0, a.shape[1])

def test_feature_net_recognises_real_scenes():
    net = load_features()
    from layoutlab.shapes.judge import _batch
    x, y = _batch(range(40_100_000, 40_100_200))
    with torch.no_grad(): p = (net(x) > 0).float()
    assert (p == y).float().mean() > 0.97  # per-label accuracy on held-out real scenes

def test_scene_labels():
    y = scene_labels(scene(5).objects)
    assert int(y.sum()) == len({(o.color, o.shape) for o in scene(5).objects})
