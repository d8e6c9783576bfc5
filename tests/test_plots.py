"Edge cases of layoutlab.plots: assertions on what the figures contain."
import json
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from layoutlab.core.layout import Layout
from layoutlab.core.record import Recorder, load_recording
import layoutlab.plots as plots

LAY = Layout("a red circle and a blue square", [dict(phrase="red circle", box=[.1, .1, .5, .5]),
                                                 dict(phrase="blue square", box=[.5, .5, .9, .9])], seed=0)
TOKS = ['<|startoftext|>', 'a</w>', 'red</w>', 'circle</w>', 'and</w>', 'a</w>', 'blue</w>', 'square</w>', '<|endoftext|>']

def make(path=None, heads=False, layers=('mid', 'up'), n=3, values=True, aspect=(8, 8)):
    "A recording written through Recorder, with known maps: token k's map at step i is constant (k + 1) * (i + 1)."
    r = Recorder(path, layers=list(layers) if layers else None, heads=heads)
    r.begin(list(layers or []), TOKS + ['<|endoftext|>'] * 68, len(TOKS), (aspect[0] * 2, aspect[1] * 2),
            dict(prompt=LAY.prompt, layout=LAY.to_json(), method='m'))
    h, w = aspect
    for i in range(n):
        logits = torch.zeros(2, 2, h * w, 77)
        maps = {'mid': logits.softmax(-1), 'up': torch.zeros(2, 2, 4 * h * w, 77).softmax(-1)}
        kw = dict(energy=torch.tensor(float(i))) if values else {}
        if values and i > 0: kw['late'] = torch.tensor(1.)   # a variable first logged at step 1
        r.step(900 - 100 * i, {k: v for k, v in maps.items() if layers and k in layers}, **kw)
    rec = r.finish()
    return rec if path is None else load_recording(path)   # a file recording opened lazily (`finish` hands back the copy it kept)

def teardown_function(): plt.close('all')

def test_non_square_image_and_map():
    rec = make(aspect=(8, 12))
    img = np.zeros((64, 96, 3), np.uint8)
    ax = plots.attention_over_image(rec, img, layer='mid')
    assert ax.images[1].get_array().shape == (64, 96)
    assert plots.attention_map(rec, layer='mid').shape == (8, 12)
    assert plots.attention_map(rec).shape == (16, 24)   # all layers: the finest grid

def test_tokens_sum_and_heads_average():
    rec = make(heads=True)
    assert 'head' in rec['attention_8x8'].attention.dims
    a = plots.attention_map(rec, 0, 'mid', ['red circle', 6])
    one = [plots.attention_map(rec, 0, 'mid', t) for t in (2, 3, 6)]
    np.testing.assert_allclose(a, sum(one), rtol=1e-3)   # recorded in float16 by default (relative error ≤ 5e-4)
    np.testing.assert_allclose(a, 3 / 77, rtol=1e-3)   # uniform softmax over 77 tokens, three tokens

def test_lazy_file_recording(tmp_path):
    rec = make(tmp_path/'r.nc')
    assert rec['attention_8x8'].attention.chunks is not None
    fig = plots.overview(rec, step=1)
    assert len(fig.subfigs) == 2
    assert 'step 1 (t=800)' in fig.subfigs[0].axes[1].get_title()

def test_no_attention_recording():
    rec = make(layers=None)
    with pytest.raises(ValueError, match='no attention maps'): plots.attention_map(rec)
    fig = plots.overview(rec, step=0)
    assert len(fig.subfigs) == 1 and [a.get_title() for a in fig.subfigs[0].axes if a.get_visible()] == ['energy', 'late']

def test_late_variable_skips_nan():
    fig = plots.curves(make(), names=['late'])
    (line,) = fig.axes[0].lines
    assert list(line.get_xdata()) == [1, 2]

def test_show_layout_inputs():
    for src in (LAY, LAY.to_json(), LAY.to_dict(), make()):
        ax = plots.show_layout(src)
        assert len(ax.patches) == 2 and ax.get_xlim() == (0, 1) and ax.get_ylim() == (1, 0)
    ax = plots.show_layout(Layout("a cat"), np.zeros((10, 20, 3)))
    assert len(ax.patches) == 0 and len(ax.images) == 1

def test_layer_choice_errors_and_lists():
    rec = make()
    assert len(plots.find_layers(rec, ['mid', 'up'])) == 2
    with pytest.raises(ValueError, match='out of range'): plots.find_layers(rec, 5)
    with pytest.raises(ValueError, match='not among the recorded tokens'): plots.token_positions(rec, 'green')

def test_compare_titles_and_scale():
    a, b = make(), make()
    b.attrs['method'] = 'other'
    fig = plots.compare(a, b, labels=['A', 'B'])
    assert [ax.get_title().split('\n')[0] for ax in fig.axes] == ['A', 'B']
    assert fig.axes[0].images[0].get_clim() == fig.axes[1].images[0].get_clim()


def test_nu_spike_on_a_log_axis_and_stop_markers():
    r = Recorder(layers=None)
    r.begin([], TOKS + ['<|endoftext|>'] * 68, len(TOKS), (16, 16), dict(prompt=LAY.prompt, layout=LAY.to_json()))
    for i in range(6):
        nu = torch.tensor([1., 2., 17000. if i == 3 else 3.])
        r.step(900 - 100 * i, energy=(('iteration',), torch.tensor([1., .5, .2]) / (i + 1)), nu=(('iteration',), nu), stop=torch.tensor(i % 3))
    rec = r.finish()
    assert 'stop' not in plots.curve_names(rec)
    fig = plots.curves(rec)
    e, nu = [a for a in fig.axes if a.get_visible()]
    assert (e.get_yscale(), nu.get_yscale(), nu.get_title()) == ('linear', 'log', 'nu (log)')
    marks = {c.get_label(): c.get_offsets() for c in e.collections}
    assert sorted(marks) == ['stop: E ≤ threshold', 'stop: max iterations']
    np.testing.assert_allclose(marks['stop: E ≤ threshold'][:, 0], [1 + 2 / 3, 4 + 2 / 3])   # steps 1 and 4, at their last iteration
    assert len(e.lines) == 1                                                              # the stop code is not a curve
    fig = plots.curves(rec, names=['stop'])
    assert len(fig.axes[0].lines) == 0 and len(fig.axes[0].collections) == 2

def test_maps_not_logged_say_so():
    lay_masks = torch.ones(2, 8, 8)
    r = Recorder(layers=None)
    r.begin([], TOKS + ['<|endoftext|>'] * 68, len(TOKS), (16, 16), dict(prompt=LAY.prompt, layout=LAY.to_json()))
    for i in range(5):
        m = lay_masks if i in (1, 3) else torch.full((2, 8, 8), float('nan'))
        r.step(900 - 100 * i, gradsam_mask=(('object', 'lat_y', 'lat_x'), m))
    rec = r.finish()
    assert plots.default_step(rec, ['gradsam_mask']) == 3
    fig = plots.gradsam_panel(rec)                                  # opens at the last step where Grad-SAM acted
    assert 'step 3' in fig.axes[0].get_title()
    fig = plots.gradsam_panel(rec, step=4)
    assert [t.get_text() for a in fig.axes for t in a.texts] == ['Not logged at step 4: gradsam_mask (logged at steps 1, 3)']
    assert plots.steps_with(rec, 'gradsam_mask') == [1, 3]
