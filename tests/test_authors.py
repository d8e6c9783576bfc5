"Methods as their authors run them (issue 10, items 1, 2, 3, 5 and the recorded gradient split)."
import json, math
import numpy as np
import pytest
import torch
import layoutlab.guidance.update as update_mod
from layoutlab.core.models import tiny_pipeline
from layoutlab.core.layout import Layout
from layoutlab.guidance.registry import sample
from layoutlab.core.loop import run_pipeline, gaussian_init, encode
from layoutlab.core.record import Recorder, VARIABLES, FLAGS
from layoutlab.guidance.update import loss_guidance_sigma
from layoutlab.guidance.methods import Guidance, Injection, LossGuidance, STOP_CODES
from layoutlab.guidance.energy import AEF, NAEF
from layoutlab.guidance.update import Backprop, Langevin
from layoutlab.guidance.registry import preset

LAY = Layout("a red circle and a blue square", [dict(phrase="red circle", box=[.0, .0, .5, .5]),
                                                 dict(phrase="blue square", box=[.5, .5, 1., 1.])], seed=0)

@pytest.fixture(scope='module')
def pipe(): return tiny_pipeline('sd15')

def run(pipe, steps=4, **seams):
    return sample(pipe, LAY, steps=steps, recorder=Recorder(layers=None), progress=False, **seams).recording

# 1. iLGD's σ_t: the authors multiply ∂L/∂z_t (the scheduler-scaled model input) by the LMS σ_t = √((1−ᾱ)/ᾱ)
def test_loss_guidance_sigma_is_the_authors_by_default():
    for abar in (0.05, 0.3, 0.9):
        assert loss_guidance_sigma(abar) == pytest.approx(math.sqrt((1 - abar) / abar))
        assert loss_guidance_sigma(abar, 'vp') == pytest.approx(math.sqrt(1 - abar))
    assert LossGuidance().sigma == 'authors' and LossGuidance(sigma='vp').sigma == 'vp'

@pytest.mark.parametrize('reading, sigma', [('authors', lambda a: math.sqrt((1 - a) / a)), ('vp', lambda a: math.sqrt(1 - a))])
def test_loss_guidance_piece_passes_the_readings_sigma(pipe, monkeypatch, reading, sigma):
    seen, real = [], update_mod.loss_guided_eps   # the ε update (`LossGuidedEps`) calls it
    def spy(eps, grad, sigma_t, eta): seen.append(sigma_t); return real(eps, grad, sigma_t, eta)
    monkeypatch.setattr(update_mod, 'loss_guided_eps', spy)
    lg = LossGuidance(start=0, stop=2, **({} if reading == 'authors' else dict(sigma=reading)))
    sample(pipe, LAY, steps=3, noise_pred=lg, progress=False)
    run_ = run_pipeline(pipe); run_.scheduler.set_timesteps(3)
    abars = [float(run_.scheduler.alphas_cumprod[int(t)]) for t in run_.scheduler.timesteps[:2]]
    assert seen == pytest.approx([sigma(a) for a in abars])

# 2. iLGD's windows: injection at steps 1–10, loss guidance at steps 1–24 (step 0 skipped)
def test_ilgd_windows_skip_step_zero(pipe):
    assert (Injection().start, Injection().stop, LossGuidance().start, LossGuidance().stop) == (1, 11, 1, 25)
    rec = run(pipe, steps=4, edit_attention=Injection(), noise_pred=LossGuidance())
    assert rec.injection_weight.notnull().values.tolist() == [False, True, True, True]
    assert rec.loss.notnull().values.tolist() == [False, True, True, True]
    rec = run(pipe, steps=4, edit_attention=Injection(start=0, stop=2), noise_pred=LossGuidance(start=2, stop=3))
    assert rec.injection_weight.notnull().values.tolist() == [True, True, False, False]
    assert rec.loss.notnull().values.tolist() == [False, False, True, False]
    params = preset('ilgd', pipe)[1]
    assert (params['edit_attention']['start'], params['edit_attention']['stop']) == (1, 11)
    assert (params['noise_pred']['start'], params['noise_pred']['stop'], params['noise_pred']['sigma']) == (1, 25, 'authors')

# 3. Layout-Control's stopping rule: after the first step whose energy is ≤ threshold, no more guidance in the run
def test_stop_rule_for_good_versus_per_step(pipe):
    steps = 6
    free = run(pipe, steps, before_step=Guidance(guided_steps=steps, max_iterations=1, threshold=None))
    e0 = free.energy.isel(iteration=0).values                     # the only energies a max_iterations=1 rule sees
    k = next(k for k in range(1, steps) if e0[k] < e0[:k].min())  # first step whose energy is below all earlier ones
    assert k <= steps - 2, f"no step after the one where the rule fires ({e0})"
    thr = float(e0[k])                                             # fires first at step k, iteration 0
    g = Guidance(guided_steps=steps, max_iterations=1, threshold=thr)
    assert g.stop_rule == 'for_good'
    good = run(pipe, steps, before_step=g)
    stop = good.stop.values.tolist()
    assert stop[:k] == [STOP_CODES['iterations']] * k and stop[k] == STOP_CODES['energy']
    assert stop[k + 1:] == [STOP_CODES['done']] * (steps - k - 1)
    assert bool(good.energy.isel(step=slice(k + 1, None)).isnull().all())          # no energy computed afterwards
    assert bool(good.energy.isel(step=slice(0, k + 1), iteration=0).notnull().all())
    each = run(pipe, steps, before_step=Guidance(guided_steps=steps, max_iterations=1, threshold=thr, stop_rule='per_step'))
    assert each.stop.values.tolist()[k] == STOP_CODES['energy']
    assert bool(each.energy.isel(step=slice(k + 1, None), iteration=0).notnull().all())  # evaluated at every step
    assert STOP_CODES['done'] not in each.stop.values.tolist()
    again = run(pipe, steps, before_step=g)                       # the piece keeps no run's state: a rerun starts fresh
    np.testing.assert_array_equal(again.stop.values, good.stop.values)
    np.testing.assert_allclose(again.energy.values, good.energy.values, equal_nan=True)
    assert preset('layout_control', pipe)[1]['before_step']['stop_rule'] == 'for_good'
    assert FLAGS['stop'][0] == sorted(set(STOP_CODES.values()))

# 5. The Langevin score: ε_c ('cond', default), ε_u ('uncond') or the CFG ε ('cfg', the earlier reading)
def _eps_at_start(pipe, steps):
    "ε_u and ε_c of the first step's latent, computed here from the UNet directly."
    r = run_pipeline(pipe)
    r.scheduler.set_timesteps(steps)
    t = r.scheduler.timesteps[0]
    size = r.unet.config.sample_size
    z = gaussian_init(r, (1, r.unet.config.in_channels, size, size), torch.Generator(r.unet.device).manual_seed(LAY.seed))
    cond = encode(r, LAY.prompt, size * r.vae_scale_factor, size * r.vae_scale_factor)
    with torch.no_grad():
        eps = r.unet(r.scheduler.scale_model_input(torch.cat([z, z]), t), t, encoder_hidden_states=cond.embeds).sample
    return z, eps.chunk(2), float(r.scheduler.alphas_cumprod[int(t)])

def test_langevin_score_choice(pipe):
    steps, cfg = 3, 7.5
    z, (eps_u, eps_c), abar = _eps_at_start(pipe, steps)
    want = {'cond': eps_c, 'uncond': eps_u, 'cfg': eps_u + cfg * (eps_c - eps_u)}
    assert Langevin().score == 'cond'
    got = {}
    for score in want:
        rec = sample(pipe, LAY, steps=steps, cfg=cfg, recorder=Recorder(layers=None), progress=False,
                     before_step=Guidance(NAEF(), Langevin(score=score), guided_steps=1, max_iterations=1, threshold=None)).recording
        got[score] = float(rec.score_norm.isel(step=0, iteration=0))
        assert got[score] == pytest.approx(float(want[score].norm()) / math.sqrt(1 - abar), rel=1e-4), score
        assert json.loads(rec.attrs['params'])['before_step']['score'] == score
    assert len({round(v, 3) for v in got.values()}) == 3       # three different scores
    assert preset('winwinlay', pipe)[1]['before_step']['score'] == 'cond'

# The split of the NAEF gradient, logged in every Guidance run
SPLIT = ('grad_norm_aef', 'grad_norm_kl', 'grad_cos_aef_kl', 'latent_rms', 'aef_first_order')

@pytest.mark.parametrize('update', [Backprop, Langevin])
def test_naef_gradient_split(pipe, update):
    z, _, _ = _eps_at_start(pipe, 3)
    rec = run(pipe, 3, before_step=Guidance(NAEF(), update(), guided_steps=2, max_iterations=2, threshold=None))
    for v in SPLIT:
        assert rec[v].dims == ('step', 'iteration') and v in VARIABLES
    s0 = rec.isel(step=0, iteration=slice(0, 2))                 # ρ = 5 at step 0
    na, nk, cos, gn = (s0[v].values for v in ('grad_norm_aef', 'grad_norm_kl', 'grad_cos_aef_kl', 'grad_norm'))
    assert (nk > 0).all() and (na > 0).all()
    assert ((cos >= -1) & (cos <= 1)).all()
    np.testing.assert_allclose(np.sqrt(na**2 + nk**2 + 2 * na * nk * cos), gn, rtol=1e-4)   # ∇AEF + ∇KL = ∇E
    assert float(rec.latent_rms.isel(step=0, iteration=0)) == pytest.approx(float(z.norm()) / math.sqrt(z.numel()), rel=1e-5)
    assert np.isfinite(s0.aef_first_order.values).all()
    assert bool(rec.grad_norm_aef.isel(step=slice(0, 2), iteration=2).isnull().all())      # no update after the last iteration

def test_split_of_an_aef_run_and_of_rho_zero(pipe):
    rec = run(pipe, 3, before_step=Guidance(AEF(), Backprop(), guided_steps=2, max_iterations=2, threshold=None))
    s = rec.isel(step=slice(0, 2), iteration=slice(0, 2))
    np.testing.assert_allclose(s.grad_norm_aef.values, s.grad_norm.values, rtol=1e-6)
    assert (s.grad_norm_kl.values == 0).all() and np.isnan(s.grad_cos_aef_kl.values).all()
    # backprop moves Δz = −s∇E, so ⟨∇AEF, Δz⟩ = −s‖∇E‖²
    np.testing.assert_allclose(s.aef_first_order.values, -s.step_size.values * s.grad_norm.values**2, rtol=1e-3)
    rec = run(pipe, 3, before_step=Guidance(NAEF(rho0=0.), Backprop(), guided_steps=2, max_iterations=1, threshold=None))
    s = rec.isel(step=slice(0, 2), iteration=0)
    assert (s.grad_norm_kl.values <= 1e-5 * s.grad_norm.values).all()      # no KL weight: the gradient is all AEF
