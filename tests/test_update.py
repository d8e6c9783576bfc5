"Edge cases of layoutlab.guidance.update that would clutter the notebook."
import math
import numpy as np
import pytest
import torch
from layoutlab.guidance.update import sigma_from_alpha_bar, alpha_bar_from_sigma, sd_alpha_bars, backprop_step, layout_control_step_size, layout_control_stop, grad_norm_map, langevin_step, loss_guided_eps, loss_guidance_sigma, injection_weight, inject_logits

def test_sigma_alpha_bar_roundtrip_tensor():
    ab = torch.tensor([0.005, 0.3, 0.99])
    torch.testing.assert_close(alpha_bar_from_sigma(sigma_from_alpha_bar(ab)), ab)

def test_sd_schedule_monotone():
    ts, ab = sd_alpha_bars(50)
    assert len(ts) == 50 and ts[0] == 981 and ts[-1] == 1
    assert (np.diff(ab) > 0).all()          # less noise at every later step

@pytest.mark.parametrize('abar', [0.0058, 0.1, 0.7])
def test_step_size_readings(abar):
    s = sigma_from_alpha_bar(abar)
    vp = layout_control_step_size(alpha_bar_t=abar, scale=30.)
    assert vp == pytest.approx(30 * (1 - abar))
    assert layout_control_step_size(sigma_t=s, scale=30.) == pytest.approx(vp)                   # from σ or from ᾱ
    assert layout_control_step_size(sigma_t=s, scale=30., latent='ve') == pytest.approx(30 * s**2)
    assert layout_control_step_size(alpha_bar_t=abar, latent='vp_naive') / vp == pytest.approx(1 / abar)

def test_step_size_errors():
    with pytest.raises(ValueError): layout_control_step_size()
    with pytest.raises(ValueError): layout_control_step_size(sigma_t=1., latent='other')

def test_ve_vp_equivalence_float64():
    "The 've' rule on x = z/√ᾱ and the 'vp' rule on z move to the same point, for several ᾱ."
    E = lambda z: (z**3).sum() + (z[..., 0] * z[..., 1]).sum()
    z = torch.randn(2, 3, 4, 2, dtype=torch.float64)
    for abar in (0.006, 0.2, 0.9):
        x = (z / abar**.5).requires_grad_(True)
        gx, = torch.autograd.grad(E(x * abar**.5), x)
        x1 = backprop_step(x, gx, layout_control_step_size(alpha_bar_t=abar, latent='ve'))
        zz = z.clone().requires_grad_(True); gz, = torch.autograd.grad(E(zz), zz)
        z1 = backprop_step(z, gz, layout_control_step_size(alpha_bar_t=abar, latent='vp'))
        torch.testing.assert_close(x1.detach() * abar**.5, z1)

def test_stop_rule_order():
    assert layout_control_stop(10, 0, 0.0) == 'steps'           # out of the guided window wins
    assert layout_control_stop(2, 5, 0.0) == 'iterations'
    assert layout_control_stop(2, 4, 0.2) == 'energy'
    assert layout_control_stop(2, 4, 0.21) == ''
    assert layout_control_stop(0, 0, 0.5, threshold=0.6) == 'energy'
    assert layout_control_stop(4, 0, 0.5, guided_steps=4) == 'steps'

def test_grad_norm_map():
    g = torch.zeros(1, 4, 2, 2); g[0, :, 1, 0] = torch.tensor([1., 2., 2., 0.])
    torch.testing.assert_close(grad_norm_map(g), torch.tensor([[[0., 0.], [3., 0.]]]))

def _inputs(b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 4, 8, 8, generator=g) for _ in range(4)]

def test_langevin_nu_and_formula_per_sample():
    z, eps, gE, n = _inputs()
    gE[1] *= 1e-4                                   # very different gradient scales across the batch
    abar = 0.02
    z1, info = langevin_step(z, eps, gE, abar, r=0.06, noise=n)
    torch.testing.assert_close(info['nu'], info['score_norm'] / info['grad_norm'])
    for i in range(3):
        s = -eps[i] / math.sqrt(1 - abar)
        nu = s.norm() / gE[i].norm(); t = s - nu * gE[i]
        xi = 2 * (0.06 * n[i].norm() / t.norm())**2
        torch.testing.assert_close(z1[i], z[i] + xi * t + (2 * xi).sqrt() * n[i], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(info['xi'][i], xi)
    torch.testing.assert_close(info['step_norm'], (z1 - z).flatten(1).norm(dim=1), rtol=1e-4, atol=1e-5)

def test_langevin_invariant_to_energy_scale_and_nu_scale():
    z, eps, gE, n = _inputs()
    a, _ = langevin_step(z, eps, gE, 0.1, noise=n)
    b, _ = langevin_step(z, eps, 1e3 * gE, 0.1, noise=n)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    _, i2 = langevin_step(z, eps, gE, 0.1, noise=n, nu_scale=2.)
    _, i1 = langevin_step(z, eps, gE, 0.1, noise=n)
    torch.testing.assert_close(i2['nu'], 2 * i1['nu'])

def test_langevin_zero_gradient_and_readings():
    z, eps, gE, n = _inputs()
    gE[0] = 0
    z1, info = langevin_step(z, eps, gE, 0.5, noise=n)
    assert info['nu'][0] == 0 and torch.isfinite(z1).all()
    torch.testing.assert_close(info['target_norm'][0], info['score_norm'][0])
    _, i_s = langevin_step(z, eps, gE, 0.5, noise=n, xi_norm='score')
    torch.testing.assert_close(i_s['xi'][0], info['xi'][0])        # equal when ∇E = 0
    with pytest.raises(ValueError): langevin_step(z, eps, gE, 0.5, xi_norm='other')

def test_langevin_generator_and_tensor_r():
    z, eps, gE, _ = _inputs()
    a, _ = langevin_step(z, eps, gE, 0.3, generator=torch.Generator().manual_seed(5))
    b, _ = langevin_step(z, eps, gE, 0.3, generator=torch.Generator().manual_seed(5))
    c, _ = langevin_step(z, eps, gE, 0.3, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    r = torch.tensor([0.03, 0.06, 0.12]).view(3, 1, 1, 1)
    n = torch.randn(z.shape)
    _, ir = langevin_step(z, eps, gE, 0.3, r=r, noise=n)
    _, i6 = langevin_step(z, eps, gE, 0.3, r=0.06, noise=n)
    torch.testing.assert_close(ir['xi'][1], i6['xi'][1])
    _, i12 = langevin_step(z, eps, gE, 0.3, r=0.12, noise=n)
    torch.testing.assert_close(ir['xi'][2], i12['xi'][2])
    torch.testing.assert_close(i12['xi'] / i6['xi'], torch.full((3,), 4.))

def test_langevin_cos_reading():
    z, eps, gE, n = _inputs()
    _, it = langevin_step(z, eps, gE, 0.3, noise=n)
    _, isc = langevin_step(z, eps, gE, 0.3, noise=n, xi_norm='score')
    torch.testing.assert_close(isc['xi'] / it['xi'], 2 * (1 - it['cos']), rtol=1e-4, atol=1e-6)

def test_loss_guided_eps_readings():
    eps, g = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    abar = 0.01
    # ε + η σ_VE ∇_x L equals ε + η √(1-ᾱ) ∇_z L, with ∇_x = √ᾱ ∇_z
    a = loss_guided_eps(eps, abar**.5 * g, loss_guidance_sigma(abar, 've'))
    b = loss_guided_eps(eps, g, loss_guidance_sigma(abar, 'vp'))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(loss_guided_eps(eps, g, 1., eta=0.), eps)
    with pytest.raises(ValueError): loss_guidance_sigma(0.5, 'other')

def test_injection_weight():
    assert injection_weight(0.) == 0.
    assert injection_weight(math.e - 1, nu_prime=1.) == pytest.approx(1.)

def test_inject_logits_shapes_and_purity():
    S = torch.randn(16, 64, 77).abs()                                    # (batch*heads, hw, tokens)
    M = torch.zeros(2, 8, 8, dtype=torch.bool); M[0, :4, :4] = True; M[1, 4:, 4:] = True
    S0 = S.clone()
    out = inject_logits(S, M, [[2, 3], [5]], sigma_t=3.)
    assert torch.equal(S, S0)                                            # input untouched
    assert out.shape == S.shape
    w = injection_weight(3.)
    for k, i in ((2, 0), (3, 0), (5, 1)):
        torch.testing.assert_close(out[..., k], S[..., k] + w * S[..., k].max() * M[i].flatten().float())
    untouched = [k for k in range(77) if k not in (2, 3, 5)]
    assert torch.equal(out[..., untouched], S[..., untouched])
    flat = inject_logits(S, M.flatten(1), [[2, 3], [5]], sigma_t=3.)     # flat masks: same
    torch.testing.assert_close(flat, out)

def test_inject_logits_max_over_query_and_resize():
    S = torch.randn(2, 4, 16, 6).abs()
    M = torch.zeros(1, 64, 64); M[0, :32, :32] = 1                        # resized to the 4×4 grid
    out = inject_logits(S, M, [[1]], sigma_t=1., max_over='query')
    m = torch.zeros(4, 4); m[:2, :2] = 1
    torch.testing.assert_close(out[..., 1], S[..., 1] + injection_weight(1.) * S[..., 1].amax(-1, keepdim=True) * m.flatten())
    with pytest.raises(ValueError): inject_logits(S, M, [[1]], sigma_t=1., max_over='other')

def test_inject_logits_differentiable():
    S = torch.randn(1, 2, 16, 4, requires_grad=True)
    M = torch.zeros(1, 16); M[0, :5] = 1
    out = inject_logits(S, M, [[1]], sigma_t=2.)
    g, = torch.autograd.grad(out.softmax(-1)[..., 1].sum(), [S])
    assert torch.isfinite(g).all() and g.abs().sum() > 0
