"Edge cases of the shapes world, its detector and the shipped ShapesSD weights."
import time
from pathlib import Path
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from layoutlab.core.metrics import match, box_iou
from layoutlab.shapes.world import COLORS, SHAPES, WORDS, ShapeObject, Scene, scene, detect, pixel_box, shape_mask, validate_detector


@given(st.integers(0, 2**31 - 1))
@settings(max_examples=30, deadline=None)
def test_scene_deterministic_and_consistent(seed):
    a, b = scene(seed), scene(seed)
    assert a.prompt == b.prompt and np.array_equal(a.image, b.image)
    assert [o.box for o in a.objects] == [o.box for o in b.objects]
    assert a.image.dtype == np.uint8 and a.image.shape == (64, 64, 3)
    assert 1 <= len(a.objects) <= 3
    assert len({o.color for o in a.objects}) == len(a.objects)  # distinct colours
    assert all(w in WORDS for w in a.prompt.replace(',', ' ').split())
    for o, m in zip(a.objects, a.masks):
        assert o.color in COLORS and o.shape in SHAPES
        assert all(0 <= v <= 1 for v in o.box) and o.box[0] < o.box[2] and o.box[1] < o.box[3]
        assert pixel_box(m) == o.box
    # masks never overlap (so truth boxes are never occluded)
    assert a.masks.sum(0).max() <= 1
    # phrases appear in prompt order
    pos = [a.prompt.index(o.phrase) for o in a.objects]
    assert pos == sorted(pos)


def test_different_seeds_differ():
    assert len({scene(s).prompt for s in range(30)}) > 10
    assert not np.array_equal(scene(1).image, scene(2).image)


def test_background_not_constant_and_not_detected():
    s = scene(0)
    bg = s.image[~s.masks.any(0)]
    assert bg.std(0).max() > 0.5  # a gradient, not a constant
    empty = s.image.copy(); empty[s.masks.any(0)] = bg.mean(0).astype(np.uint8)
    assert detect(empty) == []


@given(st.integers(0, 10**6))
@settings(max_examples=40, deadline=None)
def test_detector_recovers_truth(seed):
    s = scene(seed)
    d = detect(s.image)
    m = match(d, s.objects)
    assert len(d) == len(s.objects) and len(m) == len(s.objects)
    assert all(iou > 0.9 for _, _, iou in m)


def test_detector_small_objects_and_min_area():
    img = np.full((64, 64, 3), 230, np.uint8)
    img[10:13, 10:13] = COLORS['red']  # 9 pixels
    assert [o.phrase for o in detect(img)] == ['red square']
    assert detect(img, min_area=10) == []


def test_detector_tolerates_noise_and_blur():
    from scipy import ndimage
    rng = np.random.default_rng(0)
    for seed in range(20):
        s = scene(seed)
        im = ndimage.uniform_filter(s.image.astype(float), size=(2, 2, 1)) + rng.normal(0, 8, s.image.shape)
        d = detect(np.clip(im, 0, 255).astype(np.uint8))
        m = match(d, s.objects)
        assert len(m) == len(s.objects), (seed, d, s.objects)
        assert min(u for _, _, u in m) > 0.75


def test_detect_accepts_float_and_rgba():
    s = scene(4)
    rgba = np.concatenate([s.image, np.full((64, 64, 1), 255, np.uint8)], -1)
    assert len(detect(rgba)) == len(s.objects)
    assert len(detect(s.image.astype(np.float32))) == len(s.objects)


def test_box_iou_and_match():
    assert box_iou((0, 0, 1, 1), (0, 0, 1, 1)) == 1
    assert box_iou((0, 0, .5, .5), (.5, .5, 1, 1)) == 0
    t = [ShapeObject('red', 'circle', (0, 0, .5, .5))]
    assert match([ShapeObject('blue', 'circle', (0, 0, .5, .5))], t) == []  # colour must agree
    assert match([ShapeObject('red', 'circle', (0, 0, .5, .5))], t)[0][2] == 1


def test_scene_layout():
    pytest.importorskip('layoutlab.core.layout')
    s = scene(7)
    lay = s.layout()
    assert lay.prompt == s.prompt and [o.phrase for o in lay.objects] == [o.phrase for o in s.objects]
    assert [tuple(o.box) for o in lay.objects] == [o.box for o in s.objects]


def test_tokenizer_has_every_word_as_one_token():
    models = pytest.importorskip('layoutlab.core.models')
    tok = models.shipped_tokenizer()
    assert [w for w in WORDS if len(tok(w, add_special_tokens=False)['input_ids']) != 1] == []


def test_validation_small():
    v = validate_detector(range(50))
    assert v['mean_iou'] > 0.95 and v['AP50'] > 0.95 and v['recall'] == 1 and v['precision'] == 1


SHAPES_DIR = Path(__file__).parents[1] / 'layoutlab' / 'assets' / 'shapes'


@pytest.mark.skipif(not (SHAPES_DIR / 'model_index.json').exists(), reason='ShapesSD weights not trained yet')
def test_shipped_weights_load_and_draw_a_detectable_object():
    import torch
    from layoutlab.core.models import load_pipeline
    size = sum(f.stat().st_size for f in SHAPES_DIR.rglob('*') if f.is_file())
    assert size <= 30 * 2**20
    assert not list(SHAPES_DIR.rglob('*.bin')) and not list(SHAPES_DIR.rglob('*.pt'))
    t0 = time.time()
    pipe = load_pipeline('shapes', device='cpu')
    assert time.time() - t0 < 5
    assert type(pipe).__name__ == 'StableDiffusionPipeline'
    assert pipe.unet.config.sample_size == 16 and pipe.vae.config.scaling_factor != 0.18215
    found = 0
    for seed in range(3):
        img = pipe('a red circle', num_inference_steps=20, guidance_scale=3.0, output_type='np',
                   generator=torch.Generator().manual_seed(seed)).images[0]
        img = (img * 255).round().astype(np.uint8)
        assert img.shape == (64, 64, 3)
        found += any(o.color == 'red' for o in detect(img))
    assert found >= 1
