"Edge cases of layoutlab.ui.widgets, driven from Python (no browser): boxes set as the canvas sets them."
import json
import matplotlib; matplotlib.use('Agg')
import numpy as np
import pytest
import torch
from layoutlab.core.layout import Layout
from layoutlab.core.record import Recorder
import layoutlab.ui.widgets as widgets
from layoutlab.ui.widgets import LayoutEditor, RecordingBrowser

def box(x, y, w, h, label): return dict(x=x, y=y, width=w, height=h, label=label)

def test_zero_area_box_is_reported_and_kept():
    ed = LayoutEditor(image_size=100)
    boxes = [box(10, 10, 0, 30, 'red circle')]
    ed.bbox.bboxes = boxes
    assert ed.layout is None and 'zero area' in ed.error and 'zero area' in ed.message.value
    assert ed.bbox.bboxes == boxes

def test_boxes_outside_canvas_are_clipped():
    ed = LayoutEditor(image_size=(200, 100))
    ed.bbox.bboxes = [box(-20, 50, 120, 80, 'blue square')]
    assert ed.layout.boxes == [(0., .5, .5, 1.)]

def test_phrases_follow_prompt_until_edited():
    ed = LayoutEditor(prompt='a cat')
    ed.prompt.value = 'a photo of a dog with a hat'
    assert ed.bbox.classes == ['dog', 'hat']
    ed.phrases.value = 'dog'
    ed.prompt.value = 'a dog and a cat'
    assert ed.bbox.classes == ['dog']
    ed.bbox.bboxes = [box(0, 0, 10, 10, 'dog')]
    ed.prompt.value = 'a cat'          # the boxed phrase left the prompt: reported, boxes kept
    assert ed.layout is None and 'not in the prompt' in ed.error and len(ed.bbox.bboxes) == 1

def test_label_from_an_old_phrase_list():
    "A box whose label is no longer among the phrases but still in the prompt is valid (the prompt decides)."
    ed = LayoutEditor(prompt='a red circle and a blue square')
    ed.bbox.bboxes = [box(0, 0, 50, 50, 'red circle')]
    ed.phrases.value = 'blue square'
    assert ed.error is None and ed.layout.phrases == ['red circle']

def test_load_json_and_callback():
    lay = Layout('a red circle', [dict(phrase='red circle', box=[.2, .2, .6, .8])], seed=7)
    ed = LayoutEditor(image_size=50)
    seen = []
    ed.on_change(seen.append)
    ed.load(lay.to_json())
    assert (ed.seed.value, ed.layout.to_dict()) == (7, lay.to_dict())
    assert seen[-1].to_dict() == lay.to_dict()

def test_run_failures_go_to_the_message():
    ed = LayoutEditor(model='no/such-model', steps=1)
    ed.bbox.bboxes = [box(0, 0, 100, 100, 'red circle')]
    assert ed.run() is None
    assert 'Run failed' in ed.message.value and ed.progress.bar_style == 'danger'
    assert not ed.run_button.disabled

def test_default_model_fallback_note(monkeypatch):
    monkeypatch.setattr(widgets, 'default_model', lambda: 'tiny-sd15')
    ed = LayoutEditor(steps=2, image_size=64)
    ed.bbox.bboxes = [box(0, 0, 32, 32, 'red circle')]
    res = ed.run()
    assert res is not None and ed.model_name == 'tiny-sd15'
    assert 'tiny random-weight pipeline' in ed.message.value
    assert ed.recording.attrs['model'] == 'tiny-sd15'

def test_guided_method_keeps_progress(monkeypatch):
    "A preset's own seams run, and the progress bar still advances every step."
    from layoutlab.core.models import tiny_pipeline
    if 'layout_control' not in widgets.available_methods(): pytest.skip('layoutlab.guidance.methods has no layout_control preset')
    ed = LayoutEditor(tiny_pipeline('sd15'), method='layout_control', steps=2, image_size=64,
                      method_options={'Guidance': dict(guided_steps=2, max_iterations=1, threshold=None)})
    ed.bbox.bboxes = [box(0, 0, 32, 32, 'red circle')]
    res = ed.run()
    assert res is not None, ed.message.value
    assert (ed.progress.value, ed.recording.attrs['method']) == (2, 'layout_control')
    assert 'energy' in ed.recording.data_vars
    br = ed.browser()
    assert br.iteration.layout.display is None and 'energy' in br.curves.value

def test_browser_without_attention():
    r = Recorder(layers=None)
    r.begin([], ['<s>', 'a</w>', '</s>'] + ['</s>'] * 74, 3, (8, 8), dict(prompt='a', layout=Layout('a').to_json()))
    for i in range(3): r.step(10 - i, energy=torch.tensor(float(i)))
    br = RecordingBrowser(r.finish())
    assert br.layer.layout.display == 'none' and br.token.layout.display == 'none' and br.head.layout.display == 'none'
    att = br.canvases['attention'].fig.axes                 # no attention: the image panel and the x̂₀ note only
    assert len(att) == 2 and att[1].texts[0].get_text() == 'x̂₀ preview: not recorded (the run logged no x0_pred)'
    assert [a.get_title() for a in br.canvases['curves'].fig.axes if a.get_visible()] == ['energy']
    assert br.canvases['maps'].widget.layout.display == 'none'

def _disk_recording(path, n=6):
    r = Recorder(path, layers=['mid'], heads=True)
    lay = Layout('a red circle', [dict(phrase='red circle', box=[.1, .1, .6, .6])])
    r.begin(['mid'], ['<s>', 'a</w>', 'red</w>', 'circle</w>', '</s>'] + ['</s>'] * 72, 5, (16, 16), dict(prompt=lay.prompt, layout=lay.to_json()))
    for i in range(n):
        r.step(900 - 100 * i, {'mid': torch.rand(2, 2, 64, 77).softmax(-1)}, energy=(('iteration',), torch.tensor([1., float('nan')])),
               x0_pred=(('channel', 'latent_y', 'latent_x'), torch.randn(4, 16, 16)))
    r.finish()
    from layoutlab.core.record import load_recording
    return load_recording(path)

def test_browsable_reads_from_disk(tmp_path):
    rec = _disk_recording(tmp_path/'r.nc')
    assert rec['attention_8x8'].attention.chunks is not None          # opened lazily, one dask chunk per step
    small = widgets.browsable(rec)
    assert small['attention_8x8'].attention.chunks is None and small.energy.chunks is None
    assert rec['attention_8x8'].attention.chunks is not None          # the caller's recording is left lazy
    big = widgets.browsable(rec, limit=0)                              # too big to load: per-step values in memory, attention from disk
    att = big['attention_8x8'].attention
    assert big.energy.chunks is None and att.chunks is not None and set(att.chunks[0]) == {1}
    np.testing.assert_allclose(att.isel(step=3).values, rec['attention_8x8'].attention.isel(step=3).values)

def test_browser_steps_and_iterations(tmp_path):
    br = RecordingBrowser(_disk_recording(tmp_path/'r.nc'))
    assert (br.step.value, br.iteration.max, br.iteration.value) == (5, 0, 0)     # one of two iterations ran
    br.step.value = 2
    assert [t[0] for t in br.timings] == ['step'] and br.timings[0][1] < 5 and br.timings[0][2] <= br.timings[0][1] + .05
    assert 'step 2 ' in br.canvases['attention'].fig.axes[1].get_title()
    assert br.canvases['attention'].fig.axes[2].get_title().startswith('x̂₀ predicted at step 2')
    br.head.value = 0
    assert 'head 0' in br.canvases['attention'].fig.axes[1].get_title()

def test_head_of_averaged_recording_is_an_error():
    import layoutlab.plots as plots
    r = Recorder(layers=['mid'])
    r.begin(['mid'], ['<s>', 'a</w>', '</s>'] + ['</s>'] * 74, 3, (8, 8), dict(prompt='a', layout=Layout('a').to_json()))
    r.step(10, {'mid': torch.rand(2, 2, 16, 77).softmax(-1)})
    with pytest.raises(ValueError, match='head-averaged'): plots.attention_map(r.finish(), 0, token=1, head=0)

def test_editor_model_cfg_and_parameters(monkeypatch):
    ed = LayoutEditor(model='shapes', method='winwinlay')
    assert ed.cfg.value == widgets.default_cfg('shapes')
    assert ed.options()['Guidance']['threshold'] is None and 'r' in ed.options()['Guidance']
    ed.model.value = 'tiny-sd15'
    assert ed.cfg.value == widgets.default_cfg('tiny-sd15') and ed.pipe is None
    ed._fields[('Guidance', 'threshold')].value = '0.5'
    assert ed.options()['Guidance']['threshold'] == .5
    ed._fields[('Guidance', 'threshold')].value = 'abc'
    with pytest.raises(ValueError, match='Guidance.threshold must be a number'): ed.options()
    ed.method.value = 'ilgd'
    assert set(ed.options()) == {'Injection', 'LossGuidance'}
    assert set(ed.options()['LossGuidance']) == {'start', 'stop', 'eta', 'sigma'}       # its parts' parameters too (issue 21)
    assert ed._fields[('LossGuidance', 'sigma')].options == ('authors', 'vp')          # the update's Literal, a menu

def test_editor_open_bad_files(tmp_path):
    ed = LayoutEditor(image_size=64)
    (tmp_path/'bad.json').write_text('{"prompt": 3')
    assert ed.open_layout(tmp_path/'bad.json') is None and 'is not a layout JSON' in ed.message.value
    assert ed.save(tmp_path/'x.json') == {'layout': tmp_path/'x.json'}          # no run yet: the layout only
    assert LayoutEditor(layout=str(tmp_path/'x.json')).layout.prompt == ed.layout.prompt

def test_browsable_keeps_a_selection(tmp_path):
    rec = _disk_recording(tmp_path/'r.nc').isel(step=slice(0, 3))
    assert widgets.browsable(rec).sizes['step'] == 3            # not the whole file again
