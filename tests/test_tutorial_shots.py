"""The tutorial's two screenshots, taken of the tutorial itself: nbs/guides/17_tutorial.ipynb run in JupyterLab
(headless, on 127.0.0.1) and Debian's Chromium, driven by Playwright, as in tests/test_browser.py.

The editor's output (with the two boxes the tutorial sets) becomes nbs/images/tutorial_editor.png and the browser's
(step, token and method the tutorial's text names) nbs/images/tutorial_browser.png. Before each shot the kernel is
asked what the widget shows, so a picture of another run fails the test. It runs the whole tutorial in a browser,
so it runs only on request: `LAYOUTLAB_DOC_SHOTS=1 pytest -q tests/test_tutorial_shots.py` (it also needs
/usr/bin/chromium). The PNGs are written with a 256-colour palette to stay small;
the raw screenshots stay in test-artifacts/."""
import importlib.util, io, json, os, shutil, sys, time
from pathlib import Path
import numpy as np
import pytest
_spec = importlib.util.spec_from_file_location('test_browser', Path(__file__).resolve().parent/'test_browser.py')
_tb = sys.modules.get('test_browser') or importlib.util.module_from_spec(_spec)
if 'test_browser' not in sys.modules: sys.modules['test_browser'] = _tb; _spec.loader.exec_module(_tb)   # a file of this folder, not a distribution
CHROMIUM, CHROMIUM_ARGS, NB, _free_port, _kernel_exec, _start_lab, _stop = (getattr(_tb, k) for k in ('CHROMIUM', 'CHROMIUM_ARGS', 'NB', '_free_port', '_kernel_exec', '_start_lab', '_stop'))

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT/'nbs'/'guides'/'17_tutorial.ipynb'
IMAGES = ROOT/'nbs'/'images'
ARTIFACTS = ROOT/'test-artifacts'
SHOTS = os.environ.get('LAYOUTLAB_DOC_SHOTS') == '1'

pytestmark = [pytest.mark.skipif(not SHOTS, reason="runs the whole tutorial in a browser: set LAYOUTLAB_DOC_SHOTS=1"),
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install -y chromium)")]

def small_png(shots:list, # PNG screenshots (bytes), stacked top to bottom on white
             )->bytes: # one palette PNG, at the screenshots' own size
    "Stack screenshots and write them as a 256-colour PNG (octree palette: the maps' colours survive, unlike median cut)."
    from PIL import Image
    ims = [Image.open(io.BytesIO(b)).convert('RGB') for b in shots]
    out = Image.new('RGB', (max(i.width for i in ims), sum(i.height for i in ims)), 'white')
    y = 0
    for i in ims: out.paste(i, (0, y)); y += i.height
    buf = io.BytesIO(); out.quantize(256, method=Image.Quantize.FASTOCTREE).save(buf, format='PNG', optimize=True)
    return buf.getvalue()

def _save(name:str, shots:list):
    "The raw screenshots to test-artifacts/, the small PNG made of them to nbs/images/."
    ARTIFACTS.mkdir(exist_ok=True)
    for k, b in enumerate(shots): (ARTIFACTS/f'{Path(name).stem}_{k}.png').write_bytes(b)
    (IMAGES/name).write_bytes(small_png(shots))

def _ask(page, code:str):
    "Evaluate `code` in the tutorial's kernel and return it, through JSON."
    return json.loads(_kernel_exec(page, f"import json as _j; print(_j.dumps({code}))").strip().splitlines()[-1])

def test_tutorial_screenshots(tmp_path):
    from playwright.sync_api import sync_playwright
    t0 = time.time()
    (tmp_path/'guides').mkdir(); (tmp_path/'images').mkdir()
    shutil.copy(TUTORIAL, tmp_path/'guides'/TUTORIAL.name)
    shutil.copy(IMAGES/'ablation_report_shapes.json', tmp_path/'images')   # read by the tutorial's checks of its prose
    port = _free_port()
    proc = _start_lab(tmp_path, port)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={'width': 1280, 'height': 1400})
                page.goto(f'http://127.0.0.1:{port}/lab/tree/guides/{TUTORIAL.name}')
                page.wait_for_function(f"() => window.jupyterapp && {NB} && {NB}.sessionContext && {NB}.sessionContext.session"
                                       f" && {NB}.sessionContext.session.kernel && {NB}.sessionContext.session.kernel.status === 'idle'", timeout=90_000)
                page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
                page.wait_for_function(f"""() => {{ const nb = {NB};   // every cell ran, or one failed (the rest then never run)
                    const cells = nb.content.widgets.filter(c => c.model.type === 'code');
                    const failed = cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'));
                    return (failed || cells.every(c => c.model.executionCount)) && nb.sessionContext.session.kernel.status === 'idle'; }}""",
                    timeout=400_000, polling=500)
                errors = page.evaluate(f"() => {NB}.content.widgets.flatMap(c => c.model.type === 'code' ? c.model.outputs.toJSON() : []).filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue)")
                assert not errors, errors

                # the editor, with the tutorial's two boxes on its canvas
                cell = page.locator('.jp-Cell').filter(has_text='editor = LayoutEditor')
                cell.scroll_into_view_if_needed()
                page.wait_for_function("() => [...document.querySelectorAll('.widget-html-content')].some(e => e.textContent.includes('2 object(s)'))", timeout=30_000)
                got = _ask(page, "[editor.prompt.value, editor.layout.phrases, [list(b) for b in editor.layout.boxes], editor.method.value, editor.steps.value]")
                assert got[0] == 'a red circle and a blue square' and got[1] == ['red circle', 'blue square'] and got[3:] == ['layout_control', 50], got
                assert np.allclose(got[2][0], [40/384, 40/384, 190/384, 190/384], atol=1e-3), got
                out = cell.locator('.jp-OutputArea-output').first
                _save('tutorial_editor.png', [out.screenshot()])

                # the browser: controls and every section, at the step and token the text names
                bcell = page.locator('.jp-Cell').filter(has_text='browser = editor.browser')
                bcell.scroll_into_view_if_needed()
                imgs = bcell.locator('img.widget-image')
                page.wait_for_function("(n) => [...document.querySelectorAll('img.widget-image')].filter(i => i.complete && i.naturalWidth > 0).length >= n", arg=3, timeout=30_000)
                got = _ask(page, "[browser.rec.attrs['method'], browser.rec.sizes['step'], browser.step.value, browser.token.label, browser.canvases['attention'].fig.axes[1].get_title()]")
                assert got[:3] == ['layout_control', 50, 0] and 'red circle' in got[3] and 'step 0 ' in got[4] and 'red circle' in got[4], got
                n = imgs.count()
                parts = [bcell.locator('.widget-vbox > .widget-hbox').nth(k).screenshot() for k in range(3)] + [imgs.nth(k).screenshot() for k in range(n)]
                _save('tutorial_browser.png', parts)
            finally: browser.close()
    finally: _stop(proc)
    for name in ('tutorial_editor.png', 'tutorial_browser.png'):
        assert (IMAGES/name).stat().st_size < 150_000, f"{name} is {(IMAGES/name).stat().st_size} bytes (keep it under 150 kB)"
    assert time.time() - t0 < 600, f"the tutorial's screenshots took {time.time() - t0:.0f} s"
