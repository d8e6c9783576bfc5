"Edge cases of layoutlab.guidance.latent_init that would clutter the notebook."
import copy
import numpy as np
import pytest
import torch
from PIL import Image
from diffusers import DDIMScheduler
from layoutlab.core.models import tiny_pipeline
from layoutlab.core.layout import Layout
from layoutlab.guidance.registry import sample
from layoutlab.core.loop import encode
from layoutlab.guidance.latent_init import to_pil, encode_image, ddim_invert, border_color, salient_mask, salient_crop, reference_image, phrase_renderer, spatial_aware_init, SpatialAwareInit

LAY = Layout("a red circle and a blue square", [dict(phrase="red circle", box=[.05, .1, .45, .6]),
                                                 dict(phrase="blue square", box=[.3, .3, .95, .9])], seed=0)

@pytest.fixture(scope='module')
def pipe(): return tiny_pipeline('sd15', device='cpu')

@pytest.fixture(scope='module')
def flat(pipe):
    "The tiny pipeline with ε independent of z (conv_in zeroed): DDIM inversion is exact for it."
    p = copy.deepcopy(pipe)
    with torch.no_grad(): p.unet.conv_in.weight.zero_()
    return p

def toy_render(phrase, seed):
    a = np.full((48, 48, 3), 230, np.uint8)
    col = (220, 30, 30) if 'red' in phrase else (30, 70, 220)
    o = 4 + seed % 8
    a[o:o + 30, o + 2:o + 24] = col
    return a

def zc(shape=(1, 4, 16, 16), seed=1): return torch.randn(shape, generator=torch.Generator().manual_seed(seed))

def test_to_pil_types():
    assert to_pil(np.zeros((4, 5), np.uint8)).size == (5, 4)
    assert np.asarray(to_pil(np.ones((4, 4, 3)) * .5))[0, 0].tolist() == [128, 128, 128]
    assert to_pil(np.zeros((4, 4, 4), np.uint8)).mode == 'RGB'
    assert to_pil(Image.new('L', (3, 3))).mode == 'RGB'

def test_encode_image_non_square(pipe):
    assert encode_image(pipe, np.zeros((32, 64, 3), np.uint8)).shape == (1, 4, 16, 32)
    assert encode_image(pipe, np.zeros((32, 32, 3), np.uint8), 16, 48).shape == (1, 4, 8, 24)

@pytest.mark.parametrize('n_invert', [1, 3, 5])
def test_partial_inversion_exact_for_z_independent_eps(flat, n_invert):
    cond = encode(flat, LAY.prompt, 32, 32)
    z, start = ddim_invert(flat, zc(), cond, steps=5, n_invert=n_invert)
    assert start == 5 - n_invert
    sch = DDIMScheduler.from_config(flat.scheduler.config); sch.set_timesteps(5)
    with torch.no_grad():
        for t in sch.timesteps[start:]:
            eps = flat.unet(z, t, **cond.unet_kwargs(slice(1, 2))).sample
            z = sch.step(eps, t, z).prev_sample
    assert float((z - zc()).norm() / zc().norm()) < 1e-4

def test_inversion_with_cfg_matches_cfg_sampling(flat):
    cond = encode(flat, LAY.prompt, 32, 32)
    zT, _ = ddim_invert(flat, zc(), cond, steps=5, cfg=3.0)
    back = sample(flat, LAY, steps=5, cfg=3.0, init=lambda *a: zT, progress=False).latents
    assert float((back - zc()).norm() / zc().norm()) < 1e-4
    zT1, _ = ddim_invert(flat, zc(), cond, steps=5, cfg=1.0)
    assert float((zT1 - zT).abs().max()) > 1e-3             # the guidance scale matters

def test_trailing_spacing_and_unsupported_spacing(flat):
    cond = encode(flat, LAY.prompt, 32, 32)
    p = copy.copy(flat)
    p.scheduler = DDIMScheduler.from_config(flat.scheduler.config, timestep_spacing='trailing')
    zT, _ = ddim_invert(p, zc(), cond, steps=5)
    back = sample(p, LAY, steps=5, cfg=1.0, init=lambda *a: zT, progress=False).latents
    assert float((back - zc()).norm() / zc().norm()) < 1e-4
    p.scheduler = DDIMScheduler.from_config(flat.scheduler.config, timestep_spacing='linspace')
    with pytest.raises(ValueError): ddim_invert(p, zc(), cond, steps=5)

def test_inversion_keeps_dtype_and_does_not_touch_pipeline_scheduler(pipe):
    cond = encode(pipe, LAY.prompt, 32, 32)
    pipe.scheduler.set_timesteps(7)
    before = pipe.scheduler.timesteps.clone()
    z, _ = ddim_invert(pipe, zc(), cond, steps=4)
    assert z.dtype == torch.float32 and torch.isfinite(z).all()
    assert torch.equal(pipe.scheduler.timesteps, before)

def test_salient_mask_object_touching_border():
    a = np.full((32, 32, 3), 250, np.uint8); a[0:10, 0:32] = (20, 20, 20)   # a bar along the top edge
    m = salient_mask(a)
    assert m[:10].all() and not m[12:].any()

def test_salient_crop_shapes():
    crop, m = salient_crop(toy_render('red', 0))
    assert crop.shape[:2] == m.shape == (30, 22) and m.all()

def test_reference_overlap_small_on_top():
    ref, _, pasted = reference_image(LAY, toy_render, 64, return_parts=True)
    a = np.asarray(ref)
    # the red circle's box is the smaller one, pasted last: red where the boxes overlap
    assert a[int(.4 * 64), int(.4 * 64)].tolist() == [220, 30, 30]
    assert not (pasted[0] & pasted[1]).any()

def test_reference_backgrounds():
    bg = np.zeros((10, 20, 3), np.uint8); bg[:, 10:] = 255
    a = np.asarray(reference_image(LAY, toy_render, (32, 64), background=Image.fromarray(bg)))
    assert a.shape == (32, 64, 3) and a[0, 0].tolist() == [0, 0, 0] and a[0, -1].tolist() == [255, 255, 255]
    empty = reference_image(Layout("a photo"), toy_render, 16)
    assert np.asarray(empty).std() == 0
    with pytest.raises(ValueError, match='background'): reference_image(LAY, toy_render, 16, background='grey')

def test_seeds_passed_to_renderer():
    seen = []
    reference_image(LAY, lambda p, s: seen.append((p, s)) or toy_render(p, s), 16, seed=7)
    assert seen == [('red circle', 7), ('blue square', 8)]

def test_phrase_renderer_template(pipe):
    got = {}
    def fake_sample(p, prompt, **kw): got.update(prompt=prompt, **kw); return type('S', (), {'image': Image.new('RGB', (4, 4))})()
    img = phrase_renderer(fake_sample, pipe, steps=3, template='a photo of a {}', height=64)('red circle', 5)
    assert img.size == (4, 4)
    assert got == dict(prompt='a photo of a red circle', steps=3, cfg=7.5, seed=5, progress=False, height=64)

def test_spatial_aware_init_arguments(pipe):
    with pytest.raises(ValueError, match='encode'): spatial_aware_init(pipe, LAY, toy_render, 4)
    with pytest.raises(ValueError, match='noise'): spatial_aware_init(pipe, LAY, toy_render, 4, encode=encode, noise=2)
    s = spatial_aware_init(pipe, LAY, toy_render, 6, n_invert=2, encode=encode, height=32, width=48, noise=.5)
    assert s.start == 4 and s.latents.shape == (1, 4, 16, 24) and s.params['n_invert'] == 2 and s.steps == 6
    z1 = s(pipe, (1, 4, 16, 24), torch.Generator().manual_seed(0))
    z2 = s(pipe, (1, 4, 16, 24), torch.Generator().manual_seed(0))
    assert torch.equal(z1, z2) and not torch.equal(z1, s.latents)
    out = sample(pipe, LAY, steps=6, height=32, width=48, init=s, progress=False)
    assert out.image.size == (48, 32)

def test_spatial_aware_init_sdxl():
    p = tiny_pipeline('sdxl', device='cpu')
    s = spatial_aware_init(p, LAY, toy_render, 3, encode=encode)
    assert s.latents.shape == (1, 4, 16, 16) and torch.isfinite(s.latents).all()
    assert sample(p, LAY, steps=3, init=s, progress=False).latents.shape == (1, 4, 16, 16)
