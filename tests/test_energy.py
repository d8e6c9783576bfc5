"Edge cases of layoutlab.guidance.energy that would clutter the notebook."
import math
import pytest
import torch
from layoutlab.core.attention import grid_size
from layoutlab.guidance.energy import resize_masks, toy_probs, aef, box_prior, rho_schedule, naef, ilgd_loss

BOXES = [(0., 0., .5, .5), (.5, .25, 1., 1.)]
TOKENS = [[1], [3, 4]]

def rect_masks(h, w, boxes=BOXES):
    "Cells whose centres lie in each box (same rule as layoutlab.core.layout.box_mask, without the non-empty fix)."
    ys, xs = (torch.arange(h) + .5) / h, (torch.arange(w) + .5) / w
    return torch.stack([((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None] for x0, y0, x1, y1 in boxes])

def rand_maps(sizes=((8, 8), (4, 4)), batch=1, heads=2, tokens=6, grad=False, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = {f'l{h}x{w}': torch.randn(batch, heads, h * w, tokens, generator=g, dtype=dtype).requires_grad_(grad) for h, w in sizes}
    return logits, {k: v.softmax(-1) for k, v in logits.items()}

def test_grid_shape_aspect():
    assert grid_size(16 * 24, aspect=24 / 16) == (16, 24)
    with pytest.raises(ValueError): grid_size(17)

@pytest.mark.parametrize('n', [4, 8, 16, 32, 64])
def test_resize_never_empties(n):
    m = torch.zeros(3, 64, 64, dtype=torch.bool)
    m[0, 0:2, 0:2] = True; m[1, 61:64, 30:33] = True; m[2, 10:50, 5:60] = True
    r = resize_masks(m, n, n)
    assert r.shape == (3, n, n) and r.dtype == torch.bool
    assert (r.flatten(1).sum(1) > 0).all()

def test_resize_keeps_empty_and_accepts_2d():
    assert resize_masks(torch.zeros(8, 8), 4, 4).sum() == 0
    assert resize_masks(torch.ones(8, 8), 4, 4).shape == (1, 4, 4)

def test_resize_upsamples_exactly():
    m = rect_masks(4, 4)
    up = resize_masks(m, 8, 8)
    assert torch.equal(up, m.repeat_interleave(2, 1).repeat_interleave(2, 2))

def test_aef_uniform_and_inside():
    uni = {'a': torch.full((1, 2, 64, 6), 1 / 6), 'b': torch.full((1, 2, 16, 6), 1 / 6)}
    e = aef(uni, rect_masks(64, 64), TOKENS)
    torch.testing.assert_close(e['per_object'], torch.tensor([[(1 - .25)**2, (1 - .375)**2]]))
    assert e['per_layer'].shape == (1, 2, 2) and e['inside'].shape == (1, 2)

def test_aef_batch_independent_gradients():
    logits, maps = rand_maps(batch=2, grad=True)
    e = aef(maps, rect_masks(8, 8), TOKENS)
    g_all = torch.autograd.grad(e['total'], list(logits.values()))
    logits1 = {k: v[:1].detach().clone().requires_grad_(True) for k, v in logits.items()}
    e1 = aef({k: v.softmax(-1) for k, v in logits1.items()}, rect_masks(8, 8), TOKENS)
    g_one = torch.autograd.grad(e1['total'], list(logits1.values()))
    for a, b in zip(g_all, g_one): torch.testing.assert_close(a[:1], b)
    torch.testing.assert_close(e['total'], e['energy'].sum())

def test_aef_scale_and_reduce():
    _, maps = rand_maps()
    e1, e30, es = aef(maps, rect_masks(8, 8), TOKENS), aef(maps, rect_masks(8, 8), TOKENS, scale=30.), aef(maps, rect_masks(8, 8), TOKENS, reduce='sum')
    torch.testing.assert_close(e30['total'], 30 * e1['total'])
    torch.testing.assert_close(e30['energy'], e1['energy'])                   # the stopping rule reads the unscaled energy
    torch.testing.assert_close(es['energy'], 4 * e1['energy'])                # 2 layers × 2 objects
    with pytest.raises(ValueError): aef(maps, rect_masks(8, 8), TOKENS, reduce='max')

def test_aef_input_checks():
    _, maps = rand_maps()
    with pytest.raises(ValueError, match='masks for'): aef(maps, rect_masks(8, 8), [[1]])
    with pytest.raises(ValueError, match='at least one token'): aef(maps, rect_masks(8, 8), [[1], []])
    with pytest.raises(ValueError, match='no attention maps'): aef({}, rect_masks(8, 8), TOKENS)
    with pytest.raises(ValueError, match='batch, heads'): aef({'x': torch.rand(64, 6)}, rect_masks(8, 8), TOKENS)
    three_d = {k: v[0] for k, v in maps.items()}                              # (heads, hw, tokens): batch of one
    torch.testing.assert_close(aef(three_d, rect_masks(8, 8), TOKENS)['energy'], aef(maps, rect_masks(8, 8), TOKENS)['energy'])

def test_aef_non_square_grid():
    maps = {'l': torch.full((1, 1, 8 * 16, 6), 1 / 6)}
    e = aef(maps, rect_masks(8, 16), TOKENS, aspect=2.0)
    area0 = rect_masks(8, 16)[0].float().mean()
    torch.testing.assert_close(e['per_object'][0, 0], (1 - area0)**2)

def test_half_precision_maps_are_upcast():
    _, maps = rand_maps()
    e32 = aef(maps, rect_masks(8, 8), TOKENS)['energy']
    e16 = aef({k: v.half() for k, v in maps.items()}, rect_masks(8, 8), TOKENS)['energy']
    assert e16.dtype == torch.float32
    torch.testing.assert_close(e16, e32, atol=2e-3, rtol=1e-2)

def test_box_prior_forms():
    t = box_prior((.25, .25, .75, .75), 8, 8, lam=1.)
    tp = box_prior((.25, .25, .75, .75), 8, 8, lam=1., form='printed')
    torch.testing.assert_close(tp.sum(), torch.tensor(1.))
    # printed form in cells, W = H = 4 cells: d_printed = 4 * d_normalised → same τ as the normalised form with λ·4
    torch.testing.assert_close(tp, box_prior((.25, .25, .75, .75), 8, 8, lam=4., form='normalised'))
    assert (tp.max() / tp[tp > 0].min()) > (t.max() / t[t > 0].min())
    with pytest.raises(ValueError): box_prior((.25, .25, .75, .75), lam=1.)
    with pytest.raises(ValueError): box_prior(torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError): box_prior((.25, .25, .75, .75), 8, 8, form='other')

def test_box_prior_symmetric_and_peaked_at_centre():
    t = box_prior((0., 0., 1., 1.), 6, 6, lam=3.)
    torch.testing.assert_close(t, t.flip(0)); torch.testing.assert_close(t, t.flip(1)); torch.testing.assert_close(t, t.T)
    assert t[2:4, 2:4].min() == t.max()

def test_rho_schedule():
    vals = [rho_schedule(i, 10) for i in range(12)]
    assert vals[0] == 5.0 and vals[9] == 0.0 and vals[11] == 0.0
    assert all(a > b for a, b in zip(vals[:9], vals[1:10]))
    assert rho_schedule(3, 7, rho0=2.) == pytest.approx(1.0)

def test_naef_kl_nonnegative_and_rho_zero():
    _, maps = rand_maps(seed=3)
    e = naef(maps, rect_masks(8, 8), TOKENS, rho=2., lam=1.5)
    assert (e['kl'] >= -1e-6).all()
    e0 = naef(maps, rect_masks(8, 8), TOKENS, rho=0.)
    torch.testing.assert_close(e0['energy'], aef(maps, rect_masks(8, 8), TOKENS)['energy'])
    torch.testing.assert_close(e['per_object'], e['aef'] + 2. * e['kl'])

def test_naef_kl_zero_at_prior_with_boxes_only():
    lam = 3.
    a = torch.zeros(1, 1, 64, 6)
    for k, b in ((1, BOXES[0]), (3, BOXES[1]), (4, BOXES[1])): a[..., k] = box_prior(b, 8, 8, lam=lam).flatten()
    a[..., 0] = 1 - a[..., 1:].sum(-1)
    e = naef({'l': a}, None, TOKENS, rho=5., lam=lam, boxes=BOXES)
    torch.testing.assert_close(e['kl'], torch.zeros(1, 2), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match='masks or boxes'): naef({'l': a}, None, TOKENS)

def test_naef_gradients_finite_with_zeros_and_float64():
    logits, maps = rand_maps(grad=True, dtype=torch.float64)
    e = naef(maps, rect_masks(8, 8), TOKENS, rho=5.)
    assert e['total'].dtype == torch.float64
    for g in torch.autograd.grad(e['total'], list(logits.values())): assert torch.isfinite(g).all() and g.abs().sum() > 0
    z = torch.zeros(1, 2, 64, 6, requires_grad=True)
    with torch.no_grad(): z[..., 0] = 1.
    e = naef({'l': z}, rect_masks(8, 8), TOKENS, rho=5.)            # no attention at all on the phrase tokens
    g, = torch.autograd.grad(e['total'], [z])
    assert torch.isfinite(e['total']) and torch.isfinite(g).all()

def test_naef_kl_spreading_lowers_energy():
    "Descending NAEF on free logits spreads a corner-concentrated token over its box; AEF alone does not."
    m = rect_masks(8, 8)[:1]
    def run(rho):
        pat = torch.full((8, 8), -4.); pat[0, 0] = 4.
        x = torch.zeros(1, 1, 64, 3); x[..., 1] = pat.flatten()
        x.requires_grad_(True)
        for _ in range(150):
            e = naef({'l': x.softmax(-1)}, m, [[1]], rho=rho)
            g, = torch.autograd.grad(e['total'], [x])
            with torch.no_grad(): x -= 20. * g
        return naef({'l': x.softmax(-1)}, m, [[1]], rho=1.)['kl'].item()
    assert run(1.) < 0.5 * run(0.)

def test_ilgd_values_weights_and_tokens():
    m16 = rect_masks(16, 16)
    a = torch.zeros(2, 2, 256, 6)
    a[..., 1] = m16[0].flatten().float(); a[..., 3] = m16[1].flatten().float()   # token 4 attends nowhere
    L = ilgd_loss({'l': a}, m16, TOKENS)
    n1 = m16[1].sum().float()
    torch.testing.assert_close(L['per_object'][0], torch.stack([-m16[0].sum().float(), -n1 / 2]))   # tokens 3 and 4 averaged
    torch.testing.assert_close(L['weights'].sum(-1), torch.ones(2, 3))
    torch.testing.assert_close(L['total'], L['energy'].sum())

def test_ilgd_weights_favour_strong_rows():
    a = torch.full((1, 2, 256, 6), 0.01); a[:, 1, :, 1] = 0.5               # head 1 attends to token 1 much more
    L = ilgd_loss({'l': a}, rect_masks(16, 16)[:1], [[1]])
    assert L['weights'][0, 0, 1] > L['weights'][0, 0, 0]

def test_ilgd_gradients_and_nearest_mode():
    logits, maps = rand_maps(sizes=((8, 8), (16, 16), (32, 32)), grad=True)
    for mode in ('bilinear', 'nearest'):
        L = ilgd_loss(maps, rect_masks(64, 64), TOKENS, mode=mode)
        gs = torch.autograd.grad(L['total'], list(logits.values()), retain_graph=True)
        assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in gs)

def test_toy_probs_rows():
    p = toy_probs({1: torch.randn(4, 4), 2: torch.randn(4, 4)}, 4, 4, n_tokens=5, heads=3, batch=2)
    assert p.shape == (2, 3, 16, 5)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 3, 16))
