"Edge cases of layoutlab.guidance.gradsam that would clutter the notebook."
import numpy as np
import pytest
import torch
from layoutlab.core.models import tiny_pipeline
from layoutlab.core.layout import Layout
from layoutlab.guidance.registry import sample
from layoutlab.core.loop import encode
from layoutlab.core.attention import capture_attention
from layoutlab.guidance.gradsam import importance, combine_importance, threshold_value, importance_masks, noise_to, blend_outside, GradSAM, gradsam_manipulation

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

# --- the authors' importance (issue 10, item 4): per output latent element, on the pre-step input at the current timestep
import layoutlab.guidance.gradsam as G

def _forward(pipe, seed=0, layers='*attn2'):
    cond = encode(pipe, LAY.prompt, 32, 32)
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)
    cap = capture_attention(pipe.unet, layers, grad=True)
    return cond, z, cap

def test_latent_importance_equals_a_loop_of_autograd_grad(pipe):
    cond, z, cap = _forward(pipe)
    tokens = LAY.token_indices(pipe.tokenizer)
    with cap as cap:
        eps = pipe.unet(z, 500, **cond.unet_kwargs(slice(1, 2))).sample
        got = G.latent_importance(cap.maps, eps, tokens, chunk=100)       # 100 does not divide 1,024
        maps = list(cap.maps.values())
        for c, i, j in [(0, 0, 0), (1, 3, 12), (2, 15, 0), (3, 9, 9)]:
            gs = torch.autograd.grad(eps[0, c, i, j], maps, retain_graph=True)
            want = [sum(float((m[0].detach() * g[0].clamp(min=0))[..., t].sum()) for m, g in zip(maps, gs)) for t in tokens]
            torch.testing.assert_close(got[:, c, i, j], torch.tensor(want), rtol=1e-4, atol=1e-7)
    assert got.shape == (2, 4, 16, 16) and (got >= 0).all() and got.sum() > 0
    assert not torch.allclose(got[:, 0], got[:, 1]) and not torch.allclose(got[0], got[1])   # per channel, per object

def test_latent_importance_chunking_and_branch(pipe):
    cond, z, cap = _forward(pipe, seed=1, layers='mid_block*attn2')     # one layer: a shorter backward
    tokens = LAY.token_indices(pipe.tokenizer)
    with cap as cap:
        eps = pipe.unet(torch.cat([z, z]), 500, **cond.unet_kwargs()).sample       # [uncond, cond]
        a = G.latent_importance(cap.maps, eps, tokens, chunk=1024)
        b = G.latent_importance(cap.maps, eps, tokens, chunk=37)
        u = G.latent_importance(cap.maps, eps, tokens, branch=0, chunk=1024)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, u)                                          # the conditional branch is read by default
    assert G.latent_importance(cap.maps, eps, [], chunk=8).shape == (0, 4, 16, 16)
    with pytest.raises(ValueError, match='chunk must be an integer >= 1'): G.latent_importance({}, eps, tokens, chunk=0)

def _plain_importance(maps, eps, tokens):
    "The straightforward reading: one `autograd.grad` per output element of the last branch, A ⊙ ReLU(∂ε/∂A) summed over layers, heads, queries and tokens."
    flat, maps = eps[-1].flatten(), list(maps.values())
    out = torch.zeros(len(tokens), flat.numel())
    for e in range(flat.numel()):
        gs = torch.autograd.grad(flat[e], maps, retain_graph=True, allow_unused=True)
        for m, g in zip(maps, gs):
            if g is None: continue
            s = (m[-1].detach() * g[-1].clamp(min=0)).sum((0, 1))           # (tokens,)
            for k, t in enumerate(tokens): out[k, e] += s[t].sum()
    return out.view(len(tokens), *eps.shape[1:])

def test_fast_path_equals_the_plain_loop_over_every_element(pipe):
    "The seam's path (`_forward_at` without a graph to the weights, `latent_importance` in default chunks) against an ordinary forward and a loop."
    from types import SimpleNamespace
    cond, tokens = encode(pipe, LAY.prompt, 64, 64), LAY.token_indices(pipe.tokenizer)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))          # 256 latent elements, every one checked
    maps, eps = G._forward_at(GradSAM(None), SimpleNamespace(pipe=pipe, cond=cond, capture=None), z, 500)
    with torch.enable_grad(): fast = G.latent_importance(maps, eps, tokens)
    with capture_attention(pipe.unet, '*attn2', grad=True) as cap, torch.enable_grad():
        e = pipe.unet(z.clone().requires_grad_(True), 500, **cond.unet_kwargs(slice(-1, None))).sample
        plain = _plain_importance(cap.maps, e, tokens)
    assert G.latent_importance.__defaults__[-1] == 16 and GradSAM(None).chunk == 16
    assert plain.shape == (2, 4, 8, 8) and (plain > 0).any() and (plain >= 0).all()
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-9)

def test_channel_masks_per_channel():
    imp = torch.zeros(2, 3, 8, 8)
    imp[0, 0, :2, :2] = 1; imp[0, 1, 6:, 6:] = 1; imp[1, 2, 3:5, 3:5] = 1
    masks, union = G.channel_masks(imp, sigma=0, dilate=0)                    # mean + 0.5 std per map
    assert masks.shape == (2, 3, 8, 8) and union.shape == (3, 8, 8)
    assert torch.equal(masks[0, 0], imp[0, 0].bool()) and torch.equal(masks[0, 1], imp[0, 1].bool())
    assert not masks[0, 2].any() and torch.equal(union[2], imp[1, 2].bool())
    grown, _ = G.channel_masks(imp, sigma=0, dilate=1)
    assert grown[0, 0].sum() > masks[0, 0].sum() and (grown[0, 0] >= masks[0, 0]).all()
    assert not G.channel_masks(torch.ones(1, 4, 8, 8))[1].any()

def test_defaults_are_the_authors_and_bad_values_fail():
    from layoutlab.guidance.methods import GradSAMFromReference
    assert GradSAM(None).importance == 'authors' and GradSAMFromReference().importance == 'authors'
    with pytest.raises(ValueError, match="GradSAM.importance must be 'authors' or 'scalar', got 'exact'"): GradSAM(None, importance='exact')
    with pytest.raises(ValueError, match='GradSAM.chunk must be an integer >= 1'): GradSAM(None, chunk=0)
    with pytest.raises(ValueError, match="GradSAMFromReference.importance must be 'authors' or 'scalar', got 'x'"): GradSAMFromReference(importance='x')
    from layoutlab.studies.bench import parse_param
    assert parse_param('GradSAMFromReference.importance=authors,scalar') == ('GradSAMFromReference.importance', ['authors', 'scalar'])

class UnetSpy:
    "Records (step, input equals z_in, input equals the new latent, timestep) of every UNet call made inside the seam."
    def __init__(self, gs): self.gs, self.calls, self.logged = gs, [], []
    def __call__(self, state):
        unet, fwd, z_in, new = state.pipe.unet, state.pipe.unet.forward, state.z_in.detach().clone(), state.latents.clone()
        unet.forward = lambda x, t, **kw: self.calls.append((state.i, torch.equal(x, z_in), torch.equal(x, new), int(t))) or fwd(x, t, **kw)
        try: out = self.gs(state)
        finally: del unet.forward
        self.logged.append((state.i, int(state.t), int(state.timesteps[state.i + 1]) if state.i + 1 < len(state.timesteps) else None,
                            {k: v for k, v in state.values.items() if k.startswith('gradsam')}))
        return out

def test_authors_seam_reads_the_pre_step_input_at_the_current_timestep(pipe):
    spy = UnetSpy(gradsam_manipulation(torch.full((1, 4, 16, 16), 3.0)))
    sample(pipe, LAY, steps=6, after_step=spy, progress=False)               # schedule 831, 665, 499, 333, 167, 1
    assert spy.calls == [(0, True, False, 831), (1, True, False, 665), (2, True, False, 499)]
    for i, t, nxt, logged in spy.logged[:3]:
        assert logged['gradsam_importance'][0] == ('object', 'channel', 'lat_y', 'lat_x')
        assert logged['gradsam_mask'][1].shape == (2, 4, 16, 16)
        union = logged['gradsam_union'][1].bool()
        assert logged['gradsam_union'][0] == ('channel', 'lat_y', 'lat_x') and union.shape == (4, 16, 16)
        assert (union != union[:1]).any()                                     # the channels' masks differ
        torch.testing.assert_close(logged['gradsam_kept'][1], union.float().mean(0))

def test_scalar_option_is_todays_reading(pipe):
    spy = UnetSpy(gradsam_manipulation(torch.full((1, 4, 16, 16), 3.0), importance='scalar'))
    sample(pipe, LAY, steps=6, after_step=spy, progress=False)
    assert spy.calls == [(0, False, True, 665), (1, False, True, 499), (2, False, True, 333)]   # new latent, next timestep
    dims = spy.logged[0][3]
    assert dims['gradsam_importance'][0] == ('object', 'lat_y', 'lat_x') and dims['gradsam_union'][0] == ('lat_y', 'lat_x')
