"Performance plumbing: real-size configs, capture only what is read, the early-stopped energy forward, the perf command."
import pytest, torch
from typer.testing import CliRunner
from layoutlab.core.models import tiny_pipeline, real_unet, REAL_CONFIGS
from layoutlab.core.layout import Layout
from layoutlab.core.attention import CaptureProcessor, guidance_layers, select_layers
from layoutlab.guidance.registry import sample
from layoutlab.core.loop import predict_noise, attention_forward, needed_layers
from layoutlab.core.record import Recorder

@pytest.fixture(scope='module')
def pipe(): return tiny_pipeline('sd15', device='cpu')

LAY = Layout('a red circle and a blue square', [dict(phrase='red circle', box=[.1, .1, .5, .5]),
                                                dict(phrase='blue square', box=[.5, .5, .9, .9])], seed=1)

def n_params(m): return sum(p.numel() for p in m.parameters())

def test_real_configs_have_the_published_sizes():
    assert n_params(real_unet('sd15')) == 859_520_964
    assert n_params(real_unet('sdxl')) == 2_567_463_684
    assert real_unet('sd15', dtype=torch.float16).dtype == torch.float16 and torch.get_default_dtype() == torch.float32
    assert REAL_CONFIGS['sdxl']['unet']['cross_attention_dim'] == 768 + 1280   # both text encoders' hidden states

def test_one_real_sd15_block_runs():
    "The first cross-attention down block of SD 1.5, built for real (a few M parameters), on a 32x32 latent."
    from diffusers.models.unets.unet_2d_blocks import get_down_block
    c = REAL_CONFIGS['sd15']['unet']
    block = get_down_block(c['down_block_types'][0], num_layers=2, in_channels=320, out_channels=320, temb_channels=1280,
                           add_downsample=True, resnet_eps=1e-5, resnet_act_fn='silu', resnet_groups=32,
                           cross_attention_dim=768, num_attention_heads=c['attention_head_dim'], downsample_padding=1,
                           attention_head_dim=c['attention_head_dim'])
    with torch.no_grad(): h, res = block(torch.randn(1, 320, 32, 32), torch.randn(1, 1280), encoder_hidden_states=torch.randn(1, 77, 768))
    assert h.shape == (1, 320, 16, 16) and torch.isfinite(h).all()

class Counting:
    "Counts calls of the capture processor while installed."
    def __init__(self, monkeypatch):
        self.names = []
        orig = CaptureProcessor.__call__
        def call(proc, *a, **kw): self.names.append(proc.name); return orig(proc, *a, **kw)
        monkeypatch.setattr(CaptureProcessor, '__call__', call)

def test_unguided_run_without_recorder_captures_nothing(pipe, monkeypatch):
    c = Counting(monkeypatch)
    sample(pipe, LAY, steps=2, progress=False)
    assert c.names == []

def test_recorder_layers_only(pipe, monkeypatch):
    c = Counting(monkeypatch)
    mid = 'mid_block.attentions.0.transformer_blocks.0.attn2'
    rec = sample(pipe, LAY, steps=2, recorder=Recorder(layers=[mid]), progress=False).recording
    assert set(c.names) == {mid} and len(c.names) == 2
    (group,) = rec.children                                          # one layer: one resolution
    assert rec[group].attention.dtype == 'float16'                  # float16 by default

def test_layout_control_captures_its_energy_layers_only(pipe, monkeypatch):
    c = Counting(monkeypatch)
    sample(pipe, LAY, 'layout_control', steps=2, Guidance=dict(guided_steps=1, max_iterations=1, threshold=None), progress=False)
    assert set(c.names) == set(guidance_layers(pipe.unet)) != set(select_layers(pipe.unet, '*attn2'))

def test_ilgd_and_plain_functions_capture_every_attn2(pipe):
    from layoutlab.guidance.registry import preset
    attn2 = select_layers(pipe.unet, '*attn2')
    assert needed_layers(pipe.unet, list(preset('ilgd', pipe)[0].values())) == attn2
    assert needed_layers(pipe.unet, [lambda state: state.latents]) == attn2

def test_attention_forward_equals_full_forward(pipe):
    "Maps and the energy gradient from the stopped forward equal those of a full forward."
    mid = ['mid_block.attentions.0.transformer_blocks.0.attn2']
    got = {}
    class Probe:
        def attention_layers(self, unet): return mid
        def __call__(self, state):
            for name, stop in (('full', False), ('stopped', True)):
                z = state.latents.detach().requires_grad_(True)
                with torch.enable_grad():
                    if stop: maps = attention_forward(state, z, mid)
                    else: state.capture.clear(); predict_noise(state, z, cfg=False); maps = {k: state.capture.maps[k] for k in mid}
                    e = sum(m[..., 2].pow(2).sum() for m in maps.values())
                    got[name] = ({k: v.detach() for k, v in maps.items()}, torch.autograd.grad(e, z)[0], sorted(state.capture.maps))
            return state.latents
    sample(pipe, LAY, steps=1, before_step=Probe(), progress=False)
    (mf, gf, ran_f), (ms, gs, ran_s) = got['full'], got['stopped']
    assert torch.equal(mf[mid[0]], ms[mid[0]]) and torch.allclose(gf, gs, atol=1e-6) and gf.abs().sum() > 0
    assert ran_s == mid                                   # nothing captured after the mid block: the up blocks did not run

def test_perf_measures_and_renders(pipe):
    from layoutlab.studies.perf import measure, perf_table
    r = measure('tiny-sd15', steps=2, repeats=1, pipe=pipe, methods=['none', 'layout_control'], recorders=['none', 'memory'], log=lambda s: None)
    rows = {(x['method'], x['recorder']): x for x in r['rows']}
    assert rows[('none', 'none')]['passes'] == {'forward_1': 0, 'forward_2': 2, 'backward': 0}
    assert rows[('layout_control', 'none')]['passes']['backward'] > 0 and rows[('none', 'memory')]['bytes_per_step'] > 0
    t = perf_table(r)
    assert '| layout_control | memory |' in t and 'stopped after the last energy layer' in t

def test_perf_cli_rejects_unknown_method(tmp_path):
    from layoutlab.ui.cli import app
    r = CliRunner().invoke(app, ['perf', '--model', 'tiny-sd15', '--device', 'cpu', '--methods', 'none,fast', '--out', str(tmp_path/'p.json')])
    assert r.exit_code == 1 and "unknown method or recorder 'fast'" in r.output and not (tmp_path/'p.json').exists()
