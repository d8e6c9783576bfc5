"Directed Diffusion (the bundled plug-in `directed_diffusion`): the edit against a hand-computed case, its pre-softmax form, strength 0 changes nothing, the CLI runs it."
import json, math, os, subprocess, sys
from pathlib import Path
import pytest
import torch
import layoutlab
from layoutlab import sample, load_pipeline
from layoutlab.core.layout import Layout, load_layout
from layoutlab.core.record import load_recording
from layoutlab.guidance.plugins.directed_diffusion import gaussian_window, box_windows, directed_map, directed_scores, DirectedAttention
from layoutlab.guidance.registry import method_names, get_method

ROOT = Path(layoutlab.__file__).resolve().parents[1]
LAYOUT = ROOT/'layoutlab'/'assets'/'layouts'/'two-shapes.json'

@pytest.fixture(scope='module')
def pipe():
    torch.set_num_threads(1)
    from layoutlab.ui.widgets import default_model
    return load_pipeline(default_model())

def test_edit_by_hand():
    "A 4×4 grid, box [0, 0, .5, .75] → cells in rows 0–2, columns 0–1 (a 3×2 box); phrase key 1, trailing key 2; gain 2."
    lay = Layout('a red circle', [dict(phrase='red circle', box=[0, 0, .5, .75])])
    (cells, win, tk), = box_windows(lay, [[1]], [2], 4, 4)
    assert cells.view(4, 4).int().tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]] and tk == [1, 2]
    # window: rows at 0, 1.5, 3 (centre 1, σ 1.5), columns at 0, 2 (centre 1, σ 1); 1/(2π·1.5·1) = 1/(3π)
    g = lambda dy, dx: math.exp(-(dy ** 2 / 4.5 + dx ** 2 / 2)) / (3 * math.pi)
    G = torch.tensor([[g(-1, -1), g(-1, 1)], [g(.5, -1), g(.5, 1)], [g(2, -1), g(2, 1)]])
    torch.testing.assert_close(gaussian_window(3, 2), G)
    W = win.view(4, 4)
    torch.testing.assert_close(W[:3, :2], G)
    assert (W[3] == 0).all() and (W[:, 2:] == 0).all()
    # probabilities [.2, .3, .5] everywhere: in the box keys 1, 2 → p·2 + G, key 0 → .01·p; outside the box all .01·p
    P = torch.tensor([.2, .3, .5]).repeat(16, 1)
    out, edited = directed_map(P, [(cells, win, tk)], 2.)
    for c in range(16):
        y, x = divmod(c, 4)
        if y < 3 and x < 2: want = torch.tensor([.002, .6 + G[y, x], 1. + G[y, x]])
        else: want = torch.tensor([.002, .003, .005])
        torch.testing.assert_close(out[c], want)
    assert edited.sum() == 12
    # through the seam: softmax(S′) = p′ / Σp′, by hand for cell (1, 0); cell (3, 3) outside: unchanged
    S = P.log()
    got = directed_scores(S, [(cells, win, tk)], 2.).softmax(-1)
    q = torch.tensor([.002, .6 + G[1, 0], 1. + G[1, 0]])
    torch.testing.assert_close(got[4], q / q.sum())
    torch.testing.assert_close(got[15], P[15])
    assert torch.equal(directed_scores(S, [(cells, win, tk)], 2., strength=0.), S)

def test_log_edit_equals_renormalised_map():
    "Random scores over several heads: softmax of the edited scores is the authors' map renormalised, to float tolerance."
    lay = Layout('a b c', [dict(phrase='a', box=[0, 0, .6, .6]), dict(phrase='c', box=[.4, .3, 1, 1])])
    regs = box_windows(lay, [[1], [3]], [4, 5], 4, 4)
    S = torch.randn(2, 3, 16, 7) * 3
    for gain in (0., .5, 9.):
        p, _ = directed_map(S.softmax(-1), regs, gain)
        torch.testing.assert_close(directed_scores(S, regs, gain).softmax(-1), p / p.sum(-1, keepdim=True))

def test_piece_schedule_and_cond_only(pipe):
    "λ falls from 9 to 0 over the first 10% of the steps; the unconditional half is untouched; trailing from the end token."
    from layoutlab.core.loop import State, encode
    lay = load_layout(LAYOUT)
    cond = encode(pipe, lay.prompt, 64, 64)
    state = State(pipe, lay, lay.token_indices(pipe.tokenizer), cond, 7.5, list(range(50)), t=torch.tensor(981), latents=torch.zeros(1, 4, 8, 8))
    piece = DirectedAttention()
    gains = []
    for i in range(7):
        state.i = i; gains.append(piece.gain_at(state))
    assert gains == [9., 6.75, 4.5, 2.25, 0., None, None]
    state.i = 0
    scores = torch.randn(2, 2, 16, 77)
    out = piece('x.attn2', scores, state)
    assert torch.equal(out[0], scores[0]) and not torch.equal(out[1], scores[1])
    (_, _, tk), _ = piece.regions(state, 16, 77)
    eot = pipe.tokenizer(lay.prompt)['input_ids'].index(pipe.tokenizer.eos_token_id)
    assert tk == sorted(set(state.tokens[0]) | set(range(eot, eot + 20)))
    assert state.values['directed_gain'] == ((), 9.)

def test_zero_strength_equals_none(pipe):
    lay = load_layout(LAYOUT)
    run0 = sample(pipe, lay, 'directed_diffusion', steps=10, progress=False, DirectedAttention=dict(strength=0.))
    none = sample(pipe, lay, 'none', steps=10, progress=False)
    torch.testing.assert_close(run0.latents, none.latents, atol=1e-4, rtol=0)
    assert not torch.equal(sample(pipe, lay, 'directed_diffusion', steps=10, progress=False).latents, none.latents)

def test_registered_and_named_once():
    assert 'directed_diffusion' in method_names()
    m = get_method('directed_diffusion')
    assert m.grid[:2] == ('DirectedAttention', 'strength') and 1.0 in m.grid[2]
    mods = [p.relative_to(ROOT/'layoutlab').as_posix() for p in (ROOT/'layoutlab').rglob('*.py')
            if p.name != '_modidx.py' and 'directed_diffusion' in p.read_text()]
    assert mods == ['guidance/plugins/directed_diffusion.py']

def test_cli_generate(generate_cli):
    "`layoutlab generate two-shapes --method directed_diffusion --steps 4`: one edit step (10% of 4, at least one), λ = 9."
    rec = generate_cli('directed_diffusion')
    assert json.loads(rec.attrs['params'])['edit_attention']['piece'] == 'DirectedAttention'
    assert rec['directed_gain'].values.tolist() == [9., 0., 0., 0.]

def test_edit_moves_phrase_attention_into_the_boxes(pipe):
    "At step 0 (same latent in both runs), each phrase's conditional cross-attention mass inside its box grows."
    from layoutlab import Recorder
    lay = load_layout(LAYOUT)
    def inside(method):
        rec = sample(pipe, lay, method, steps=4, recorder=Recorder(layers='*attn2'), progress=False).recording
        key = next(k for k in rec.children if k.startswith('attention_'))
        a = rec[key].attention.isel(step=0).mean('layer')
        m = lay.masks(a.sizes['y'], a.sizes['x']).numpy()
        return [float((a.isel(token=t).sum('token').values * m[k]).sum()) for k, t in enumerate(lay.token_indices(pipe.tokenizer))]
    base, dd = inside('none'), inside('directed_diffusion')
    assert all(d > 2 * b for d, b in zip(dd, base)), (base, dd)
