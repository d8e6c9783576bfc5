"Flow matching read as VP/DDIM: a CFG loop over EpsDenoiser + FlowAsVP gives diffusers' own SD3 / FLUX latents."
import numpy as np, torch
from layoutlab.core.models import tiny_pipeline
from layoutlab.core.flow import FlowAsVP, EpsDenoiser, c_of, pack, unpack

def _loop(pipe, cond, added, shape, steps, cfg, seed, flux):
    unet, sched = EpsDenoiser(pipe), FlowAsVP(pipe.scheduler.config, flux=flux)
    sched.set_timesteps(steps, image_seq_len=(shape[-2] // 2) * (shape[-1] // 2))
    from diffusers.utils.torch_utils import randn_tensor
    z = randn_tensor(shape, generator=torch.Generator().manual_seed(seed))
    for t in sched.timesteps:
        out = unet(torch.cat([z, z]), t, encoder_hidden_states=cond, added_cond_kwargs=added)
        eu, ec = out.sample.chunk(2); xu, xc = out.x0.chunk(2)
        z = sched.step(eu + cfg * (ec - eu), t, z, x0=xu + cfg * (xc - xu)).prev_sample
    return z

def test_sd3_matches_diffusers():
    p = tiny_pipeline("sd3"); prompt = "a red circle"
    c, u, pc, pu = p.encode_prompt(prompt=prompt, prompt_2=None, prompt_3=None, do_classifier_free_guidance=True, device='cpu')
    ours = _loop(p, torch.cat([u, c]), dict(pooled_projections=torch.cat([pu, pc])), (1, 16, 16, 16), 4, 5.0, 3, False)
    theirs = p(prompt, num_inference_steps=4, guidance_scale=5.0, height=32, width=32, generator=torch.Generator().manual_seed(3), output_type='latent').images
    assert (ours - theirs).abs().max() < 1e-4, float((ours - theirs).abs().max())

def test_flux_matches_diffusers():
    p = tiny_pipeline("flux"); prompt = "a red circle"
    c, pc, ids = p.encode_prompt(prompt=prompt, prompt_2=None, device='cpu')
    u, pu, _ = p.encode_prompt(prompt="", prompt_2=None, device='cpu')
    ours = _loop(p, torch.cat([u, c]), dict(pooled_projections=torch.cat([pu, pc]), txt_ids=ids), (1, 16, 32, 32), 4, 4.0, 3, True)
    theirs = p(prompt, negative_prompt="", true_cfg_scale=4.0, num_inference_steps=4, height=64, width=64,
               generator=torch.Generator().manual_seed(3), output_type='latent').images
    assert (pack(ours) - theirs).abs().max() < 1e-4, float((pack(ours) - theirs).abs().max())

def test_run_matches_diffusers():
    "The loop itself (run) on tiny SD3 and FLUX gives diffusers' own final latents."
    from layoutlab.core.loop import run
    sd3, flux = tiny_pipeline("sd3"), tiny_pipeline("flux")
    ours = run(sd3, "a red circle", steps=4, cfg=5.0, seed=3, progress=False).latents
    theirs = sd3("a red circle", num_inference_steps=4, guidance_scale=5.0, generator=torch.Generator().manual_seed(3), output_type='latent').images
    assert (ours - theirs).abs().max() < 1e-4
    res = run(flux, "a red circle", steps=4, cfg=4.0, seed=3, height=64, width=64, progress=False)
    theirs = flux("a red circle", negative_prompt="", true_cfg_scale=4.0, num_inference_steps=4, height=64, width=64,
                  generator=torch.Generator().manual_seed(3), output_type='latent').images
    assert (pack(res.latents) - theirs).abs().max() < 1e-4
    assert res.image.size == (64, 64)

def test_recorded_and_guided_runs():
    "A recorded run and a guided (layout_control) run go through on tiny SD3 and FLUX."
    from layoutlab.core.record import Recorder
    from layoutlab.core.layout import Layout
    from layoutlab.guidance.registry import sample
    for kind, size in (("sd3", 32), ("flux", 64)):
        p = tiny_pipeline(kind)
        lay = Layout("a red circle and a blue square", [dict(phrase="red circle", box=[.1, .1, .5, .5])], seed=3)
        rec = sample(p, lay, steps=3, height=size, width=size, recorder=Recorder(), progress=False).recording
        assert rec.sizes['step'] == 3
        g = sample(p, lay, 'layout_control', steps=3, height=size, width=size, Guidance=dict(guided_steps=2, max_iterations=3),
                   recorder=Recorder(layers=None), progress=False).recording
        e = g.energy.isel(step=0).values.ravel(); e = e[np.isfinite(e)]
        assert len(e) >= 2 and e[-1] < e[0], (kind, e)

def test_every_method_runs_on_mmdit_or_says_why_not():
    "Each registered method runs two steps on tiny SD3 and FLUX with finite latents, or refuses at once, naming why (`Method.needs_unet`)."
    import pytest
    from layoutlab.guidance.registry import sample, methods
    lay = dict(prompt="a red circle and a blue square", objects=[dict(phrase="red circle", box=[.1, .1, .45, .45]),
                                                                 dict(phrase="blue square", box=[.55, .55, .9, .9])])
    for kind, size in (("sd3", 32), ("flux", 64)):
        p = tiny_pipeline(kind)
        for name, m in methods().items():
            if m.needs_unet:
                with pytest.raises(ValueError, match=f"{name} does not run on {type(p).__name__} \\(an MMDiT transformer\\): "):
                    sample(p, lay, name, steps=2, height=size, width=size, progress=False)
                continue
            z = sample(p, lay, name, steps=2, height=size, width=size, progress=False).latents
            assert torch.isfinite(z).all(), (kind, name)
    assert {n for n, m in methods().items() if m.needs_unet} == {'densediffusion', 'attention_refocusing', 'sali'}
