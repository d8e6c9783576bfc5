"DenseDiffusion (the bundled plug-in `densediffusion`): the modulation against hand-computed scores, strength 0 changes nothing, the CLI runs it, and it moves attention into the boxes."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
import layoutlab
from layoutlab import sample, load_pipeline, Recorder
from layoutlab.core.attention import capture_attention, select_layers
from layoutlab.core.layout import Layout, load_layout
from layoutlab.core.record import load_recording
from layoutlab.guidance.plugins.densediffusion import modulate, self_regions, cross_regions, region_share, DenseAttention
from layoutlab.guidance.registry import method_names, get_method

ROOT = Path(layoutlab.__file__).resolve().parents[1]
LAYOUT = ROOT/'layoutlab'/'assets'/'layouts'/'two-shapes.json'

@pytest.fixture(scope='module')
def pipe():
    torch.set_num_threads(1)
    from layoutlab.ui.widgets import default_model
    return load_pipeline(default_model())

def test_modulation_by_hand():
    "A 4×4 block, regions {0, 1} and {2, 3}; each edited score worked out by hand: S + w(max − S) inside, S − w(S − min) outside."
    S = torch.tensor([[0., 2., 4., 6.], [1., 1., 3., 5.], [2., 0., 0., 2.], [8., 4., 4., 0.]])
    same = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    w = torch.tensor([[.5], [.25], [1.], [.5]])
    want = torch.tensor([[0 + .5*6, 2 + .5*4, 4 - .5*4, 6 - .5*6],     # max 6, min 0
                         [1 + .25*4, 1 + .25*4, 3 - .25*2, 5 - .25*4],  # max 5, min 1
                         [2 - 1*2, 0 - 1*0, 0 + 1*2, 2 + 1*0],          # max 2, min 0
                         [8 - .5*8, 4 - .5*4, 4 + .5*4, 0 + .5*8]])     # max 8, min 0
    torch.testing.assert_close(modulate(S, same, w), want)
    # [[0, 2], [1, 1]], query i with key i, weight .5: row 0 (max 2, min 0) meets at 1; row 1 is flat (range 0): unchanged
    torch.testing.assert_close(modulate(S[:2, :2], torch.eye(2, dtype=torch.bool), .5), torch.tensor([[1., 1.], [1., 1.]]))

def test_piece_edits_the_conditional_branch_only():
    "Through the piece, on a made-up state: the unconditional half is untouched; the conditional half is `modulate` with w·λ_t·R."
    from types import SimpleNamespace
    lay = Layout('a red circle', [dict(phrase='red circle', box=[0, 0, .5, 1])])
    state = SimpleNamespace(i=0, n_steps=10, t=torch.tensor(500), layout=lay, tokens=[[2, 3]], latents=torch.zeros(1, 4, 2, 2),
                            cond=SimpleNamespace(embeds=torch.zeros(2, 5, 8)), pipe=SimpleNamespace(scheduler=SimpleNamespace(config=SimpleNamespace(num_train_timesteps=1000))),
                            memory={}, values={}, log=lambda k, v: state.values.__setitem__(k, v))
    piece = DenseAttention(strength=2.)
    scores = torch.randn(2, 3, 4, 5)
    out = piece('x.attn2', scores, state)
    lam = .5 ** 5
    torch.testing.assert_close(out[0], scores[0])
    same = cross_regions(lay, [[2, 3]], 2, 2, 5)
    r = 1 - region_share(self_regions(lay, 2, 2))          # each cell belongs with half the grid: R = 0.5
    torch.testing.assert_close(r, torch.full((4, 1), .5))
    torch.testing.assert_close(out[1:], modulate(scores[1:], same, 2. * lam * r))
    assert state.values == {'modulation_cross': 2. * lam, 'modulation_self': 2. * .3 * lam}
    selfs = torch.randn(2, 1, 4, 4)                        # self-attention: keys are the 4 cells
    torch.testing.assert_close(piece('x.attn1', selfs, state)[1:], modulate(selfs[1:], self_regions(lay, 2, 2), 2. * .3 * lam * r))
    state.i = 3                                            # past the first 30% of 10 steps
    assert piece('x.attn2', scores, state) is scores and state.values['modulation_cross'] == 0.

def test_zero_strength_leaves_attention_output_unchanged(pipe):
    "Strength 0: every attention layer's output equals the unedited one; the run equals `none` to float tolerance."
    lay = load_layout(LAYOUT)
    run0 = sample(pipe, lay, 'densediffusion', steps=6, progress=False, DenseAttention=dict(strength=0.))
    none = sample(pipe, lay, 'none', steps=6, progress=False)
    torch.testing.assert_close(run0.latents, none.latents, atol=1e-4, rtol=0)
    assert not torch.equal(sample(pipe, lay, 'densediffusion', steps=6, progress=False).latents, none.latents)
    # one layer's output, with and without the zero-strength editor
    from layoutlab.core.loop import State, encode
    attn = dict(pipe.unet.named_modules())[select_layers(pipe.unet, '*attn1')[0]]
    x = torch.randn(2, 16, attn.to_q.in_features)
    cond = encode(pipe, lay.prompt, 64, 64)
    state = State(pipe, lay, lay.token_indices(pipe.tokenizer), cond, 7.5, [torch.tensor(981)], t=torch.tensor(981), latents=torch.zeros(1, 4, 8, 8))
    ref = attn(x)                                          # the model's own processor
    piece = DenseAttention(strength=0.)
    with capture_attention(pipe.unet, select_layers(pipe.unet, '*attn1'), edit=lambda n, s: piece(n, s, state)): out = attn(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    with capture_attention(pipe.unet, select_layers(pipe.unet, '*attn1'), edit=lambda n, s: DenseAttention()(n, s, state)): out1 = attn(x)
    assert (out1 - ref).abs().max() > 1e-3                 # the authors' strength does change it

def test_modulation_moves_phrase_attention_into_the_boxes(pipe):
    "At step 0 (same latent in both runs), the phrase tokens' conditional cross-attention mass inside their boxes grows."
    lay = load_layout(LAYOUT)
    def inside(method):
        rec = sample(pipe, lay, method, steps=4, recorder=Recorder(layers='*attn2'), progress=False).recording
        key = next(k for k in rec.children if k.startswith('attention_'))
        a = rec[key].attention.isel(step=0).mean('layer')
        h, w = a.sizes['y'], a.sizes['x']
        m = lay.masks(h, w).numpy()
        toks = lay.token_indices(pipe.tokenizer)
        return [float((a.isel(token=t).sum('token').values * m[k]).sum()) for k, t in enumerate(toks)]
    base, dd = inside('none'), inside('densediffusion')
    assert all(d > b for d, b in zip(dd, base)), (base, dd)

def test_registered_and_named_once():
    assert 'densediffusion' in method_names()
    m = get_method('densediffusion')
    assert m.grid[:2] == ('DenseAttention', 'strength') and 1.0 in m.grid[2]
    mods = [p.relative_to(ROOT/'layoutlab').as_posix() for p in (ROOT/'layoutlab').rglob('*.py')
            if p.name != '_modidx.py' and "'densediffusion'" in p.read_text()]
    assert mods == ['guidance/plugins/densediffusion.py']

def test_cli_generate(generate_cli):
    "`layoutlab generate two-shapes --method densediffusion`: the shipped layout, a few steps, a recording that shows the strength."
    rec = generate_cli('densediffusion')
    assert json.loads(rec.attrs['params'])['edit_attention']['piece'] == 'DenseAttention'
    mc = rec['modulation_cross'].values
    assert mc[0] > 0 and mc[-1] == 0                       # the first 30% of 4 steps: step 0 only
