"`sample` as diffusers users expect it: presets by name, the caller's pipeline untouched, model defaults, batches."
import json
import numpy as np
import pytest, torch
from diffusers import EulerDiscreteScheduler
from layoutlab.core.layout import Layout
from layoutlab.core.models import tiny_pipeline
from layoutlab.guidance.registry import method_names, preset
from layoutlab.core.record import Recorder
from layoutlab.guidance.registry import sample
from layoutlab.core.loop import default_cfg

LAY = Layout("a red circle and a blue square", [dict(phrase="red circle", box=[.1, .1, .5, .5]),
                                                dict(phrase="blue square", box=[.5, .5, .9, .9])], seed=1)

def snapshot(pipe):
    "What a caller could notice about their pipeline: scheduler class, config and timesteps, processors, config."
    s = pipe.scheduler
    return (type(s).__name__, dict(s.config), None if s.timesteps is None else s.timesteps.tolist(),
            getattr(s, 'num_inference_steps', None), {k: type(v).__name__ for k, v in pipe.unet.attn_processors.items()},
            dict(pipe.config), [p.requires_grad for p in pipe.unet.parameters()][:3])

@pytest.fixture(scope='module')
def pipe(): return tiny_pipeline('sd15')

@pytest.mark.parametrize('method', method_names())
def test_callers_pipeline_unchanged_after_every_preset(pipe, method):
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)   # not even DDIM
    pipe.scheduler.set_timesteps(7)
    procs = dict(pipe.unet.attn_processors)
    before = snapshot(pipe)
    res = sample(pipe, LAY, method, steps=3, recorder=Recorder(layers=None), progress=False)
    assert snapshot(pipe) == before
    assert all(pipe.unet.attn_processors[k] is v for k, v in procs.items())
    assert res.recording.attrs['method'] == method
    assert json.loads(res.recording.attrs['params']) == json.loads(json.dumps(preset(method, pipe)[1]))

def test_same_image_whatever_the_callers_scheduler(pipe):
    "The run's own DDIM scheduler comes from the config: the caller's scheduler class and state do not matter."
    from diffusers import DDIMScheduler
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    a = sample(pipe, LAY, steps=4, progress=False).latents
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config); pipe.scheduler.set_timesteps(9)
    assert torch.equal(a, sample(pipe, LAY, steps=4, progress=False).latents)

def test_hand_seams_are_recorded(pipe):
    from layoutlab.guidance.methods import Guidance
    from layoutlab.guidance.update import Backprop
    g = Guidance(update=Backprop(scale=12.0), guided_steps=1, max_iterations=1)
    rec = sample(pipe, LAY, steps=2, before_step=g, recorder=Recorder(layers=None), progress=False).recording
    p = json.loads(rec.attrs['params'])['before_step']
    assert rec.attrs['method'] == 'custom' and (p['piece'], p['scale'], p['energy']) == ('Guidance', 12.0, 'aef')
    seams, params = preset('ilgd', pipe)     # the old call style: a preset's own seams, named: recorded as the method
    rec = sample(pipe, LAY, steps=2, method='ilgd', recorder=Recorder(layers=None), progress=False, **seams).recording
    assert rec.attrs['method'] == 'ilgd' and json.loads(rec.attrs['params']) == json.loads(json.dumps(params))

def test_overrides_reach_the_preset(pipe):
    rec = sample(pipe, LAY, 'winwinlay', steps=2, Guidance=dict(r=0.5, guided_steps=1), recorder=Recorder(layers=None), progress=False).recording
    p = json.loads(rec.attrs['params'])['before_step']
    assert (p['r'], p['guided_steps'], p['energy'], p['update']) == (0.5, 1, 'naef', 'langevin')
    with pytest.raises(ValueError, match='method .none. has pieces: none'): sample(pipe, LAY, steps=1, Guidance=dict(r=1))

def test_cfg_default_comes_from_the_model(pipe):
    from layoutlab.core.models import load_pipeline
    assert default_cfg(pipe) == 7.5 and default_cfg(load_pipeline('shapes')) == 5.0

def test_batches_negative_prompt_and_validation(pipe):
    res = sample(pipe, LAY, steps=2, num_images_per_prompt=2, negative_prompt='a green star', recorder=Recorder(layers=None), progress=False)
    assert res.seeds == [1, 2] and len(res.images) == 2 and res.latents.shape[0] == 2
    assert [r.attrs['seed'] for r in res.recordings] == [1, 2]
    assert res.recordings[0] is not res.recordings[1]
    one = sample(pipe, LAY, steps=2, seed=2, negative_prompt='a green star', progress=False)
    assert np.array_equal(np.asarray(one.image), np.asarray(res.images[1]))
    plain = sample(pipe, LAY, steps=2, seed=2, progress=False)
    assert not torch.equal(plain.latents, one.latents)                      # the negative prompt changes the run
    for kw, msg in [(dict(steps=0), 'steps'), (dict(steps=2.5), 'steps'), (dict(cfg=float('inf')), 'cfg'), (dict(cfg='7'), 'cfg'),
                    (dict(seed=-3), 'seed'), (dict(seed=[0, 'a']), 'seed'), (dict(seed=True), 'seed'), (dict(seed=[]), 'seed'),
                    (dict(num_images_per_prompt=0), 'num_images_per_prompt')]:
        with pytest.raises(ValueError, match=msg): sample(pipe, LAY, progress=False, **kw)

def test_sdxl_negative_prompt_matches_diffusers():
    xl = tiny_pipeline('sdxl')
    ours = sample(xl, LAY, steps=3, cfg=5.0, negative_prompt='a green star', progress=False)
    theirs = xl(LAY.prompt, negative_prompt='a green star', num_inference_steps=3, guidance_scale=5.0,
                generator=torch.Generator().manual_seed(1), output_type='np').images[0]
    assert np.abs(np.asarray(ours.image, dtype=np.float32) / 255 - theirs).max() < 2 / 255
    plain = sample(xl, LAY, steps=3, cfg=5.0, progress=False)
    assert not torch.equal(plain.latents, ours.latents)
