"""Every bad input gets one clear line, before any heavy work (issue 9, item 5): tables of (input, expected message
fragment), each driven through the real function and, for the command line, through a real `layoutlab generate`."""
import json, math, shutil, subprocess, time
from pathlib import Path
import pytest, torch
from layoutlab.core.layout import Layout, LayoutError, load_layout
from layoutlab.core.models import ModelNotAvailable, load_pipeline, load_tokenizer, resolve_device, shipped_tokenizer, tiny_pipeline
from layoutlab.guidance.methods import Guidance, Injection, LossGuidance, SpatialAware, GradSAMFromReference
from layoutlab.guidance.energy import NAEF
from layoutlab.guidance.update import Backprop, Langevin
from layoutlab.guidance.registry import preset

GOOD = {"prompt": "a red circle and a blue square", "objects": [{"phrase": "red circle", "box": [0.1, 0.1, 0.5, 0.5]}], "seed": 0}

def layout(**kw)->str:
    "GOOD as JSON text with top-level keys replaced (value `...` deletes the key)."
    d = {**GOOD, **kw}
    return json.dumps({k: v for k, v in d.items() if v is not ...})

def box(b)->str: return layout(objects=[{"phrase": "red circle", "box": b}])

def one_line(e:BaseException)->str:
    s = str(e)
    assert s and '\n' not in s, repr(s)
    return s

# ---------------------------------------------------------------------------------------------------------------
# Layout JSON: (name, JSON text, expected fragment)
LAYOUTS = [
    ('objects null',          layout(objects=None),                       '"objects" must be a list of {"phrase": ..., "box": [x0, y0, x1, y1]}, got null'),
    ('objects an object',     layout(objects={"phrase": "red circle"}),   '"objects" must be a list'),
    ('seed true',             layout(seed=True),                          'seed must be an integer from 0 to 2**64-1, got the boolean true'),
    ('seed 2**64',            layout(seed=2**64),                         'seed must be an integer from 0 to 2**64-1, got 18446744073709551616'),
    ('seed 2**70',            layout(seed=2**70),                         'got 1180591620717411303424'),
    ('seed negative',         layout(seed=-1),                            'seed must be an integer from 0 to 2**64-1, got -1'),
    ('seed float',            layout(seed=1.5),                           'seed must be an integer from 0 to 2**64-1, got 1.5'),
    ('seed string',           layout(seed="7"),                           "got the string '7'"),
    ('box string "0011"',     box("0011"),                                "box of \"red circle\" must be a list of 4 numbers [x0, y0, x1, y1], got the string '0011'"),
    ('box booleans',          box([False, False, True, True]),            'got the boolean false in [False, False, True, True]'),
    ('box strings of numbers', box(["0", "0", "1", "1"]),                 "got the string '0' in ['0', '0', '1', '1']"),
    ('box null',              box(None),                                  'must be a list of 4 numbers [x0, y0, x1, y1], got null'),
    ('box of 3',              box([0, 0, 1]),                             'must be 4 numbers [x0, y0, x1, y1], got 3'),
    ('box NaN',               box([0, 0, math.nan, 1]),                   'non-finite coordinate'),
    ('misspelt "objets"',     layout(objects=..., objets=GOOD['objects']), 'unknown key "objets" in the layout (did you mean "objects"?)'),
    ('misspelt "Prompt"',     layout(prompt=..., Prompt=GOOD['prompt']),  'unknown key "Prompt" in the layout (did you mean "prompt"?)'),
    ('misspelt "phrse"',      layout(objects=[{"phrse": "red circle", "box": [0, 0, .5, .5]}]), 'unknown key "phrse" in object 1 (did you mean "phrase"?)'),
    ('object without box',    layout(objects=[{"phrase": "red circle"}]), 'object 1 has no "box"'),
    ('object a string',       layout(objects=["red circle"]),             "object 1 must be {\"phrase\": ..., \"box\": [x0, y0, x1, y1]}, got the string 'red circle'"),
    ('no prompt',             layout(prompt=...),                         'the layout has no "prompt"'),
    ('prompt a number',       layout(prompt=5),                           'prompt must be a non-empty string, got 5'),
    ('key twice',             layout()[:-1] + ', "seed": 3}',             'key "seed" appears twice in the layout JSON'),
    ('a list, not an object', json.dumps([GOOD]),                         'a layout is a JSON object with "prompt", "objects" and optionally "seed", got [{'),
    ('not JSON',              layout()[:-1],                              'layout is not valid JSON'),
    ('nested too deeply',     '[' * 100_000,                              'layout JSON is nested too deeply'),
    ('integer of 5000 digits', layout()[:-1].replace('"seed": 0', '"seed": ' + '9' * 5000) + '}', 'layout JSON cannot be read'),
]

@pytest.mark.parametrize('text, expected', [c[1:] for c in LAYOUTS], ids=[c[0] for c in LAYOUTS])
def test_bad_layout_json(tmp_path, text, expected):
    with pytest.raises(LayoutError) as e: Layout.from_json(text)
    assert expected in one_line(e.value)
    p = tmp_path/'layout.json'; p.write_text(text)
    with pytest.raises(LayoutError) as e: load_layout(p)
    assert one_line(e.value).startswith(f'{p}: ') and expected in str(e.value)  # read from a file, the error names it

def test_byte_order_mark_is_accepted(tmp_path):
    p = tmp_path/'bom.json'; p.write_text(layout(), encoding='utf-8-sig')
    assert p.read_bytes()[:3] == b'\xef\xbb\xbf'
    assert load_layout(p).to_dict() == GOOD
    assert Layout.from_json('\ufeff' + layout()).to_dict() == GOOD

def test_largest_seed_is_accepted():
    assert Layout.from_json(layout(seed=2**64 - 1)).seed == 2**64 - 1
    torch.Generator().manual_seed(2**64 - 1)  # what the sampler does with it

FILES = [('missing', lambda d: d/'nope.json', 'layout file not found'),
         ('a folder', lambda d: d, 'is a folder, not a layout file'),
         ('not UTF-8', lambda d: (d/'latin1.json').write_bytes('{"prompt": "a café"}'.encode('latin-1')) and d/'latin1.json', 'is not UTF-8 text')]

@pytest.mark.parametrize('make, expected', [c[1:] for c in FILES], ids=[c[0] for c in FILES])
def test_bad_layout_file(tmp_path, make, expected):
    with pytest.raises(LayoutError) as e: load_layout(make(tmp_path))
    assert expected in one_line(e.value)

# ---------------------------------------------------------------------------------------------------------------
# Prompt length, with the tokenizer alone
HUGE = "a red circle and a blue square " * (6_500_000 // 31)   # 6.5 MB

def test_prompt_over_the_limit_names_its_token_count():
    with pytest.raises(LayoutError) as e: Layout("circle " * 90).check_tokens(shipped_tokenizer())
    assert one_line(e.value) == 'prompt is 92 tokens with start/end; the text encoder takes at most 77'

def test_huge_prompt_fails_in_a_moment():
    lay = Layout(HUGE, [dict(phrase="red circle", box=[0, 0, .5, .5])])
    t = time.perf_counter()
    with pytest.raises(LayoutError) as e: lay.check_tokens(load_tokenizer('tiny-sd15'))
    took = time.perf_counter() - t
    assert one_line(e.value).startswith('prompt is at least ') and 'the text encoder takes at most 77' in str(e.value)
    assert f'of {len(HUGE):,} characters' in str(e.value)
    assert took < 5, took  # the whole prompt takes ~8 s to tokenize here; its head takes milliseconds

def test_a_prompt_at_the_limit_passes():
    tok = shipped_tokenizer()
    assert len(Layout("circle " * 75).check_tokens(tok)) == 0
    assert len(tok("circle " * 75)['input_ids']) == 77

# ---------------------------------------------------------------------------------------------------------------
# Devices: checked before anything loads
DEVICES = [('foo', "unknown device 'foo'; use cpu, cuda, cuda:N or mps"),
           ('meta', "device 'meta' is not supported"),
           ('cuda:-1', "unknown device 'cuda:-1'")]
DEVICES += [('cuda', "device 'cuda' asked for, but CUDA is not available on this machine")] if not torch.cuda.is_available() else \
           [(f'cuda:{torch.cuda.device_count()}', 'does not exist')]

@pytest.mark.parametrize('device, expected', DEVICES, ids=[d for d, _ in DEVICES])
def test_bad_device(device, expected):
    with pytest.raises(ValueError) as e: resolve_device(device)
    assert expected in one_line(e.value)
    with pytest.raises(ValueError) as e: load_pipeline('tiny-sd15', device=device)
    assert expected in one_line(e.value)

# ---------------------------------------------------------------------------------------------------------------
# Model folders, made from a tiny SD 1.5 pipeline and then damaged
@pytest.fixture(scope='module')
def sd15(tmp_path_factory):
    d = tmp_path_factory.mktemp('models')/'sd15'
    tiny_pipeline('sd15', device='cpu').save_pretrained(d, safe_serialization=True)
    return d

def damaged(src:Path, dest:Path, how)->tuple:
    "A copy of the model folder `src`, damaged by `how(folder)`, which returns the file the error must name."
    shutil.copytree(src, dest)
    return dest, how(dest)

def _overwrite_head(d):
    f = d/'unet'/'diffusion_pytorch_model.safetensors'; b = bytearray(f.read_bytes()); b[:16] = b'not safetensors!'; f.write_bytes(b); return f
def _truncate(d):
    f = d/'vae'/'diffusion_pytorch_model.safetensors'; f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2]); return f
def _empty(d):
    f = d/'text_encoder'/'model.safetensors'; f.write_bytes(b''); return f
def _bad_index(d):
    f = d/'model_index.json'; f.write_text(f.read_text()[:-3]); return f
def _index_class(d):
    f = d/'model_index.json'; f.write_text(f.read_text().replace('"StableDiffusionPipeline"', '"KandinskyPipeline"')); return f
def _no_index(d):
    (d/'model_index.json').unlink(); return d
def _no_unet(d):
    shutil.rmtree(d/'unet'); return d/'unet'
def _bad_config(d):
    f = d/'unet'/'config.json'; f.write_text('{"in_channels": 4,'); return f
def _pickles_only(d):
    f = d/'unet'/'diffusion_pytorch_model.safetensors'; f.rename(f.with_suffix('.bin')); return d/'unet'

FOLDERS = [('safetensors overwritten', _overwrite_head, 'is corrupt: not a readable safetensors file'),
           ('safetensors truncated', _truncate, 'is corrupt: not a readable safetensors file'),
           ('safetensors empty', _empty, 'is corrupt: not a readable safetensors file'),
           ('model_index.json malformed', _bad_index, 'is not a valid JSON file'),
           ('model_index.json other class', _index_class, "names the pipeline class 'KandinskyPipeline'; layoutlab runs StableDiffusionPipeline, StableDiffusionXLPipeline, StableDiffusion3Pipeline, FluxPipeline"),
           ('no model_index.json', _no_index, 'is not a diffusers pipeline folder: it has no model_index.json'),
           ('unet folder missing', _no_unet, "lists 'unet', but"),
           ('unet config malformed', _bad_config, 'is not a valid JSON file'),
           ('pickled weights only', _pickles_only, 'has no .safetensors weights (layoutlab never loads pickled .bin files)')]

@pytest.mark.parametrize('how, expected', [c[1:] for c in FOLDERS], ids=[c[0] for c in FOLDERS])
def test_damaged_model_folder(sd15, tmp_path, how, expected):
    folder, named = damaged(sd15, tmp_path/'m', how)
    with pytest.raises(ModelNotAvailable) as e: load_pipeline(str(folder), device='cpu')
    msg = one_line(e.value)
    assert expected in msg and str(named) in msg, msg

def test_missing_model_folder():
    with pytest.raises(ModelNotAvailable) as e: load_pipeline('./no/such/model', device='cpu')
    assert one_line(e.value) == 'model folder not found: no/such/model'

def test_sd15_folder_named_xl_loads_as_sd15(sd15, tmp_path):
    shutil.copytree(sd15, tmp_path/'my-sdxl-finetune')
    assert type(load_pipeline(str(tmp_path/'my-sdxl-finetune'), device='cpu')).__name__ == 'StableDiffusionPipeline'

def test_tokenizer_without_files(sd15, tmp_path):
    folder, _ = damaged(sd15, tmp_path/'m', lambda d: [f.unlink() for f in (d/'tokenizer').iterdir()])
    with pytest.raises(ModelNotAvailable) as e: load_tokenizer(str(folder))
    assert 'no tokenizer files (tokenizer.json, or vocab.json and merges.txt) in' in one_line(e.value)

def test_tokenizer_of_a_folder_is_the_pipelines(sd15):
    assert load_tokenizer(str(sd15))("a red circle")['input_ids'] == shipped_tokenizer()("a red circle")['input_ids']

# ---------------------------------------------------------------------------------------------------------------
# Method pieces: nonsense parameters are a ValueError naming the field
PIECES = [
    ('Guidance max_iterations -1', lambda: Guidance(max_iterations=-1), 'Guidance.max_iterations must be an integer >= 1, got -1'),
    ('Guidance max_iterations 2.5', lambda: Guidance(max_iterations=2.5), 'Guidance.max_iterations must be an integer >= 1, got 2.5'),
    ('Guidance max_iterations True', lambda: Guidance(max_iterations=True), 'Guidance.max_iterations must be an integer >= 1, got True'),
    ('Guidance guided_steps 0', lambda: Guidance(guided_steps=0), 'Guidance.guided_steps must be an integer >= 1, got 0'),
    ('Guidance threshold nan', lambda: Guidance(threshold=math.nan), 'Guidance.threshold must be None or a finite number >= 0, got nan'),
    ('Guidance threshold -1', lambda: Guidance(threshold=-1.0), 'Guidance.threshold must be None or a finite number >= 0'),
    ('Backprop scale 0', lambda: Backprop(scale=0), 'Backprop.scale must be a finite number > 0, got 0'),
    ('Backprop step_scale inf', lambda: Backprop(step_scale=math.inf), 'Backprop.step_scale must be a finite number > 0, got inf'),
    ('Langevin r -0.1', lambda: Langevin(r=-0.1), 'Langevin.r must be a finite number > 0, got -0.1'),
    ('NAEF rho0 -1', lambda: NAEF(rho0=-1), 'NAEF.rho0 must be a finite number >= 0, got -1'),
    ('NAEF lam "1"', lambda: NAEF(lam="1"), "NAEF.lam must be a finite number >= 0, got '1'"),
    ('Langevin xi_norm', lambda: Langevin(xi_norm='grad'), "Langevin.xi_norm must be 'target' or 'score', got 'grad'"),
    ('Guidance layers 5', lambda: Guidance(layers=5), 'Guidance.layers must be None or a name pattern or a list of layer names, got 5'),
    ('Guidance energy', lambda: Guidance(energy='xef'), "Guidance.energy must be a piece such as AEF() or NAEF(), got 'xef'"),
    ('Guidance r via overrides', lambda: Guidance().with_params(r=0.1), "Guidance has no parameter 'r'"),
    ('Injection nu_prime -1', lambda: Injection(nu_prime=-1), 'Injection.nu_prime must be a finite number >= 0, got -1'),
    ('Injection start -1', lambda: Injection(start=-1), 'Injection.start must be an integer >= 0, got -1'),
    ('Injection stop <= start', lambda: Injection(start=2, stop=2), 'Injection.stop must be an integer >= 3, got 2'),
    ('Injection layers None', lambda: Injection(layers=None), 'Injection.layers must be a name pattern or a list of layer names, got None'),
    ('LossGuidance eta nan', lambda: LossGuidance(eta=math.nan), 'LossGuidedEps.eta must be a finite number >= 0, got nan'),
    ('LossGuidance start -1', lambda: LossGuidance(start=-1), 'LossGuidance.start must be an integer >= 0, got -1'),
    ('LossGuidance stop <= start', lambda: LossGuidance(start=5, stop=5), 'LossGuidance.stop must be an integer >= 6, got 5'),
    ('LossGuidance size (0, 16)', lambda: LossGuidance(size=(0, 16)), 'ILGDLoss.size must be two integers >= 1, got (0, 16)'),
    ('SpatialAware noise 2', lambda: SpatialAware(noise=2), 'SpatialAware.noise must be a number in [0, 1], got 2'),
    ('SpatialAware n_invert -1', lambda: SpatialAware(n_invert=-1), 'SpatialAware.n_invert must be None or an integer >= 0, got -1'),
    ('SpatialAware render_steps 0', lambda: SpatialAware(render_steps=0), 'SpatialAware.render_steps must be an integer >= 1, got 0'),
    ('GradSAM timesteps ()', lambda: GradSAMFromReference(timesteps=()), 'GradSAMFromReference.timesteps must be a non-empty list of integer timesteps in 0 .. 999, got ()'),
    ('GradSAM timesteps 1000', lambda: GradSAMFromReference(timesteps=(1000,)), 'GradSAMFromReference.timesteps must be'),
    ('GradSAM dilate -1', lambda: GradSAMFromReference(dilate=-1), 'GradSAMFromReference.dilate must be an integer >= 0, got -1'),
    ('preset override', lambda: preset('layout_control', tiny_pipeline('sd15', device='cpu'), Guidance=dict(max_iterations=-1)),
     'Guidance.max_iterations must be an integer >= 1, got -1'),
]

@pytest.mark.parametrize('make, expected', [c[1:] for c in PIECES], ids=[c[0] for c in PIECES])
def test_bad_piece_parameters(make, expected):
    with pytest.raises(ValueError) as e: make()
    assert expected in one_line(e.value)

def test_good_pieces_still_build():
    assert Guidance(NAEF(lam=0, rho0=0), threshold=None, max_iterations=1, guided_steps=1).threshold is None
    assert Injection(layers=['mid_block.attentions.0.transformer_blocks.0.attn2']).stop == 11
    assert LossGuidance(start=3, stop=4, size=[8, 8]).stop == 4
    assert SpatialAware(n_invert=0, noise=1.0).noise == 1.0

# ---------------------------------------------------------------------------------------------------------------
# The command line: `layoutlab generate` prints one line `error: ...`, exits 1, no traceback
def generate(layout_text:str, tmp:Path, *args, model='tiny-sd15')->subprocess.CompletedProcess:
    p = tmp/'layout.json'; p.write_text(layout_text, encoding='utf-8')
    return subprocess.run(['layoutlab', 'generate', str(p), '--model', str(model), '--out', str(tmp/'out'), '--steps', '1', *args],
                          capture_output=True, text=True)

def error_line(r:subprocess.CompletedProcess)->str:
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert 'Traceback' not in r.stderr + r.stdout, r.stderr[-2000:]
    lines = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith('[transformers]')]
    assert len(lines) == 1 and lines[0].startswith('error: '), r.stderr[-2000:]
    return lines[0]

CLI = [('objects null', layout(objects=None), (), '"objects" must be a list'),
       ('seed true', layout(seed=True), (), 'seed must be an integer from 0 to 2**64-1, got the boolean true'),
       ('seed 2**64', layout(seed=2**64), (), 'got 18446744073709551616'),
       ('box "0011"', box("0011"), (), "got the string '0011'"),
       ('box strings', box(["0", "0", "1", "1"]), (), "got the string '0'"),
       ('misspelt "objets"', layout(objects=..., objets=GOOD['objects']), (), 'unknown key "objets" in the layout (did you mean "objects"?)'),
       ('--device foo', layout(), ('--device', 'foo'), "unknown device 'foo'"),
       ('prompt of 90 words', layout(prompt="circle " * 90, objects=[]), (), 'prompt is 92 tokens with start/end; the text encoder takes at most 77')]
if not torch.cuda.is_available(): CLI.append(('--device cuda', layout(), ('--device', 'cuda'), "device 'cuda' asked for, but CUDA is not available"))

@pytest.mark.parametrize('text, args, expected', [c[1:] for c in CLI], ids=[c[0] for c in CLI])
def test_cli_bad_input(tmp_path, text, args, expected):
    line = error_line(generate(text, tmp_path, *args))
    assert expected in line, line
    assert not (tmp_path/'out').exists()  # failed before anything was written

@pytest.mark.parametrize('how, expected', [c[1:] for c in FOLDERS[:4]], ids=[c[0] for c in FOLDERS[:4]])
def test_cli_damaged_model_folder(sd15, tmp_path, how, expected):
    folder, named = damaged(sd15, tmp_path/'m', how)
    line = error_line(generate(layout(), tmp_path, model=folder))
    assert expected in line and str(named) in line, line

def test_cli_checks_the_prompt_and_device_before_the_weights(sd15, tmp_path):
    "A model whose weights are corrupt: the huge prompt, and then the bad device, are reported first, so neither waited for weights."
    folder, _ = damaged(sd15, tmp_path/'m', _overwrite_head)
    t = time.perf_counter()
    line = error_line(generate(layout(prompt=HUGE, objects=[]), tmp_path, model=folder))
    assert line.startswith('error: prompt is at least ') and 'at most 77' in line, line
    took = time.perf_counter() - t
    assert 'unknown device' in error_line(generate(layout(), tmp_path, '--device', 'foo', model=folder))
    print(f'6.5 MB prompt rejected by the CLI in {took:.1f} s (process start included)')

def test_cli_accepts_bom_and_sd15_folder_named_xl(sd15, tmp_path):
    shutil.copytree(sd15, tmp_path/'sd-xl-lookalike')
    p = tmp_path/'bom.json'; p.write_text(layout(), encoding='utf-8-sig')
    r = subprocess.run(['layoutlab', 'generate', str(p), '--model', str(tmp_path/'sd-xl-lookalike'), '--out', str(tmp_path/'out'),
                        '--steps', '1', '--device', 'cpu'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path/'out'/'image.png').stat().st_size > 0
