"Edge cases of layoutlab.gradsam that would clutter the notebook."
import numpy as np
import pytest
import torch
from layoutlab.models import tiny_pipeline
from layoutlab.layout import Layout
from layoutlab.sampler import sample, encode
from layoutlab.attention import capture_attention
from layoutlab.gradsam import (importance, combine_importance, threshold_value, importance_masks, noise_to,
                               blend_outside, GradSAM, gradsam_manipulation)

LAY = Layout("a red circle and a blue square", [dict(phrase="red circle", box=[.0, .0, .5, .5]),
                                                 dict(phrase="blue square", box=[.5, .5, 1., 1.])], seed=0)

@pytest.fixture(scope='module')
def pipe(): return tiny_pipeline('sd15', device='cpu')

def toy(batch=1, heads=2, q=16, tokens=6, seed=0):
    logits = torch.randn(batch, heads, q, tokens, generator=torch.Generator().manual_seed(seed), requires_grad=True)
    return logits.softmax(-1)

def test_importance_reads_last_branch_and_callable_reduce():
    A = toy(batch=2)
    e = (A[1] * torch.arange(6.)).sum() + 100 * (A[0] * torch.arange(6.)).sum()
    got = importance({'a': A}, e, [[1], [4, 5]], reduce=lambda x: x)['a']
    want = (A.detach()[1] * torch.arange(6.)).sum(0)               # ∂e/∂A[1] = arange(6) for each head
    assert torch.allclose(got, torch.stack([want[:, 1], want[:, 4:].sum(-1)]))

def test_importance_unused_layer_and_no_tokens():
    A, B = toy(seed=0), toy(seed=1)
    got = importance({'a': A, 'b': B}, A.sum() * 0 + (A ** 2).sum(), [[1]])
    assert got['b'].abs().sum() == 0 and got['a'].shape == (1, 16)
    assert importance({'a': A}, (A ** 2).sum(), [])['a'].shape == (0, 16)
    with pytest.raises(ValueError, match='reduce'): importance({'a': A}, A.sum(), [[1]], reduce='max')

def test_relu_drops_negative_gradients():
    A = toy()
    got = importance({'a': A}, -A.sum(), [[0, 1, 2]], reduce='sum')['a']   # ∂y/∂A = −1 everywhere
    assert got.abs().sum() == 0

def test_combine_non_square_and_without_normalise():
    imp = {'coarse': torch.ones(2, 4 * 8), 'fine': 2 * torch.ones(2, 8 * 16)}
    m = combine_importance(imp, (8, 16), normalise=False)
    assert m.shape == (2, 8, 16) and torch.allclose(m, torch.full_like(m, 1.5))
    m = combine_importance(imp, (8, 16))
    assert torch.allclose(m.sum((1, 2)), torch.ones(2))

def test_threshold_and_no_blur_no_dilation():
    x = torch.zeros(1, 8, 8); x[0, 2:4, 2:4] = 1
    masks, union = importance_masks(x, (8, 8), sigma=0, dilate=0, threshold=0.5, normalise=False)
    assert torch.equal(masks[0], x[0].bool()) and torch.equal(union, x[0].bool())
    masks, _ = importance_masks(x, (8, 8), sigma=0, dilate=2, threshold=0.5, normalise=False)
    assert masks[0, 0:6, 0:6].any() and masks.sum() > 4 and not masks[0, 7, 7]
    masks, union = importance_masks(torch.zeros(0, 8, 8), (8, 8))
    assert masks.shape == (0, 8, 8) and not union.any()
    assert threshold_value(np.arange(4.), lambda a: a.max()) == 3.0

def test_blend_dtype_and_noise_generator():
    lat = torch.zeros(1, 4, 4, 4, dtype=torch.float16)
    out = blend_outside(lat, torch.zeros(4, 4, dtype=torch.bool), torch.ones(1, 4, 4, 4))
    assert out.dtype == torch.float16 and (out == 1).all()
    from diffusers import DDIMScheduler
    s = DDIMScheduler()
    a = noise_to(s, torch.zeros(1, 4, 4, 4), 500, torch.Generator().manual_seed(3))
    b = noise_to(s, torch.zeros(1, 4, 4, 4), 500, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.std() > 0.5

def test_steps_applied_50_steps():
    ts = list(range(981, 0, -20))
    assert GradSAM(None).steps_applied(ts) == {9, 22, 32}           # new timesteps 781, 521, 321
    assert GradSAM(None, timesteps=(999, 990)).steps_applied(ts) == {0}
    assert GradSAM(None).steps_applied([981]) == set()

class Spy:
    def __init__(self, gs): self.gs, self.calls = gs, []
    def __call__(self, state):
        before, maps = state.latents.clone(), dict(state.capture.maps)
        after = self.gs(state)
        self.calls.append(dict(i=state.i, before=before, after=after.clone(), maps_kept=all(state.capture.maps[k] is v for k, v in maps.items()),
                               values={k: v[1] for k, v in state.values.items()}))
        return after

def test_empty_union_leaves_latent(pipe):
    spy = Spy(gradsam_manipulation(torch.zeros(1, 4, 16, 16), threshold=1e9))
    sample(pipe, LAY, steps=4, after_step=spy, progress=False)
    assert all(torch.equal(c['before'], c['after']) for c in spy.calls)
    assert [int(c['values']['gradsam_applied']) for c in spy.calls] == [0, 0, 0, 0]
    assert 'gradsam_mask' in spy.calls[0]['values']                  # computed and logged, not applied

def test_callable_reference_no_objects_and_sampler_maps_kept(pipe):
    ref = {'z': None}
    spy = Spy(gradsam_manipulation(lambda: ref['z'], layers='mid_block*attn2'))
    ref['z'] = torch.full((1, 4, 16, 16), 5.0)
    sample(pipe, LAY, steps=4, after_step=spy, progress=False)
    applied = [c for c in spy.calls if int(c['values']['gradsam_applied'])]
    assert applied and all(c['maps_kept'] for c in spy.calls)
    spy2 = Spy(gradsam_manipulation(torch.zeros(1, 4, 16, 16)))
    sample(pipe, Layout("a red circle"), steps=4, after_step=spy2, progress=False)
    assert all(torch.equal(c['before'], c['after']) for c in spy2.calls)

def test_reference_shape_mismatch(pipe):
    with pytest.raises(ValueError, match='reference latent'):
        sample(pipe, LAY, steps=4, after_step=gradsam_manipulation(torch.zeros(1, 4, 8, 8)), progress=False)

def test_sdxl_runs():
    p = tiny_pipeline('sdxl', device='cpu')
    spy = Spy(gradsam_manipulation(torch.zeros(1, 4, 16, 16)))
    sample(p, LAY, steps=4, after_step=spy, progress=False)
    assert sum(int(c['values']['gradsam_applied']) for c in spy.calls) >= 1
