"""The widgets in a real browser: JupyterLab (headless, on 127.0.0.1) + Debian's Chromium driven by Playwright.

Opens tests/browser_demo.ipynb, runs all cells, draws a box with the mouse on the layout editor's canvas and asks
the notebook's kernel what `editor.layout` holds; draws a box with no phrase and checks the widget says so and keeps
both boxes; screenshots the editor and the recording browser (saved to test-artifacts/; also to nbs/images/ for the docs when
LAYOUTLAB_DOC_SHOTS=1, so a test run leaves tracked files alone) and checks the recording browser's figure rendered.
Skipped only when /usr/bin/chromium is missing (.ci/run installs it)."""
import json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = '/usr/bin/chromium'
ARTIFACTS = ROOT/'test-artifacts'
DOC_IMAGES = ROOT/'nbs'/'images'
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--no-first-run', '--disable-quic']

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install -y chromium)")

def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _start_lab(root:Path, port:int):
    "JupyterLab on 127.0.0.1:port serving `root`, with its config, runtime, data and settings dirs inside `root`."
    for d in ('cfg', 'data', 'runtime', 'ws', 'ipython'): (root/'.lab'/d).mkdir(parents=True, exist_ok=True)
    settings = root/'.lab'/'settings'/'@jupyterlab'/'apputils-extension'
    settings.mkdir(parents=True, exist_ok=True)
    (settings/'notification.jupyterlab-settings').write_text(json.dumps({'fetchNews': 'false', 'checkForUpdates': False}))
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(root/'.lab'/'cfg'), 'JUPYTER_DATA_DIR': str(root/'.lab'/'data'),
           'JUPYTER_RUNTIME_DIR': str(root/'.lab'/'runtime'), 'IPYTHONDIR': str(root/'.lab'/'ipython'),
           'TRANSFORMERS_VERBOSITY': 'error', 'DIFFUSERS_VERBOSITY': 'error', 'MPLBACKEND': 'module://matplotlib_inline.backend_inline'}
    cmd = [sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--allow-root', '--ServerApp.ip=127.0.0.1',
           f'--ServerApp.port={port}', '--ServerApp.port_retries=0', '--ServerApp.token=', '--ServerApp.password=',
           f'--ServerApp.root_dir={root}', '--LabApp.expose_app_in_browser=True',
           f'--LabApp.workspaces_dir={root/".lab"/"ws"}', f'--LabApp.user_settings_dir={root/".lab"/"settings"}',
           '--LabApp.news_url=None', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
    log = open(root/'.lab'/'server.log', 'w')
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None: raise RuntimeError(f"jupyter lab exited: {(root/'.lab'/'server.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f'http://127.0.0.1:{port}/api/status', timeout=2); return proc
        except OSError: time.sleep(.3)
    _stop(proc); raise RuntimeError("jupyter lab did not answer within 60 s")

def _stop(proc):
    "Stop the server (and its kernels) by its PID: SIGTERM, then SIGKILL to its process group."
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try: proc.wait(15)
        except subprocess.TimeoutExpired: pass
    try: os.killpg(proc.pid, signal.SIGKILL)   # kernels it started, if any survived; the group is the server's own
    except (ProcessLookupError, PermissionError): pass

NB = "window.jupyterapp.shell.currentWidget"

def _kernel_exec(page, code:str)->str:
    "Run `code` in the notebook's kernel (not in a cell) and return what it printed."
    return page.evaluate("""async (code) => {
        const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
        let out = '';
        const f = k.requestExecute({code, store_history: false});
        f.onIOPub = (msg) => {
            if (msg.header.msg_type === 'stream') out += msg.content.text;
            if (msg.header.msg_type === 'error') out += 'ERROR ' + msg.content.ename + ': ' + msg.content.evalue;
        };
        await f.done;
        return out; }""", code)

def _save(shot:bytes, name:str):
    ARTIFACTS.mkdir(exist_ok=True); (ARTIFACTS/name).write_bytes(shot)
    if os.environ.get('LAYOUTLAB_DOC_SHOTS') == '1': DOC_IMAGES.mkdir(exist_ok=True); (DOC_IMAGES/name).write_bytes(shot)

def test_draw_box_and_browse(tmp_path):
    from playwright.sync_api import sync_playwright
    t0 = time.time()
    shutil.copy(ROOT/'tests'/'browser_demo.ipynb', tmp_path/'demo.ipynb')
    port = _free_port()
    proc = _start_lab(tmp_path, port)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={'width': 1280, 'height': 1400})
                page.goto(f'http://127.0.0.1:{port}/lab/tree/demo.ipynb')
                page.wait_for_function(f"() => window.jupyterapp && {NB} && {NB}.sessionContext && {NB}.sessionContext.session"
                                       f" && {NB}.sessionContext.session.kernel && {NB}.sessionContext.session.kernel.status === 'idle'", timeout=90_000)
                page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
                page.wait_for_function(f"""() => {{ const nb = {NB};
                    const cells = nb.content.widgets.filter(c => c.model.type === 'code');
                    return cells.every(c => c.model.executionCount) && nb.sessionContext.session.kernel.status === 'idle'; }}""",
                    timeout=120_000, polling=500)
                errors = page.evaluate(f"() => {NB}.content.widgets.flatMap(c => c.model.type === 'code' ? c.model.outputs.toJSON() : []).filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue)")
                assert not errors, errors

                # the editor's canvas: drag from (25%, 25%) to (62.5%, 75%) of the image
                cell = page.locator('.jp-Cell').filter(has_text='editor = LayoutEditor')
                canvas = cell.locator('img[alt="annotate me"]')
                canvas.wait_for(state='visible', timeout=30_000)
                canvas.scroll_into_view_if_needed()
                page.wait_for_function("() => { const i = document.querySelector('img[alt=\"annotate me\"]'); return i && i.complete && i.naturalWidth > 0; }")
                b = canvas.bounding_box()
                x0, y0, x1, y1 = .25, .25, .625, .75
                page.mouse.move(b['x'] + x0 * b['width'], b['y'] + y0 * b['height'])
                page.mouse.down()
                page.mouse.move(b['x'] + x1 * b['width'], b['y'] + y1 * b['height'], steps=12)
                page.mouse.up()
                expect = [x0, y0, x1, y1]

                got = None
                for _ in range(40):   # the drawn box reaches the kernel through the widget's comm
                    out = _kernel_exec(page, "import json; print(json.dumps(editor.layout.to_dict() if editor.layout else {'error': editor.error}))")
                    got = json.loads(out.strip().splitlines()[-1])
                    if got.get('objects'): break
                    time.sleep(.25)
                assert got.get('objects'), f"no box reached the kernel: {got}"
                (obj,) = got['objects']
                assert obj['phrase'] == 'green circle'
                assert np.allclose(obj['box'], expect, atol=.02), (obj['box'], expect)
                (tmp_path/'layout.json').write_text(json.dumps(got))
                page.wait_for_function("() => [...document.querySelectorAll('.widget-html-content')].some(e => e.textContent.includes('1 object(s)'))", timeout=10_000)
                shot = cell.locator('.jp-OutputArea-output').first.screenshot()
                _save(shot, 'layout_editor.png')

                # bad input: a box drawn with no phrase selected is reported in the widget, and both boxes stay
                _kernel_exec(page, "editor.bbox.label = ''")
                page.wait_for_timeout(300)
                page.mouse.move(b['x'] + .70 * b['width'], b['y'] + .08 * b['height'])
                page.mouse.down()
                page.mouse.move(b['x'] + .95 * b['width'], b['y'] + .30 * b['height'], steps=8)
                page.mouse.up()
                page.wait_for_function("() => [...document.querySelectorAll('.widget-html-content')].some(e => e.textContent.includes('has no phrase'))", timeout=10_000)
                state = json.loads(_kernel_exec(page, "print(json.dumps([len(editor.bbox.bboxes), editor.layout is None, editor.error]))").strip().splitlines()[-1])
                assert state[:2] == [2, True] and 'box 2 has no phrase' in state[2], state
                ARTIFACTS.mkdir(exist_ok=True)
                (ARTIFACTS/'layout_editor_error.png').write_bytes(cell.locator('.jp-OutputArea-output').first.screenshot())

                # the recording browser: its figure is an <img> (matplotlib's PNG) in the Output widget
                bcell = page.locator('.jp-Cell').filter(has_text='browser = RecordingBrowser')
                bcell.scroll_into_view_if_needed()
                fig = bcell.locator('.widget-output img')
                fig.wait_for(state='visible', timeout=30_000)
                nat = fig.evaluate("i => [i.naturalWidth, i.naturalHeight, i.src.slice(0, 22)]")
                assert nat[0] > 300 and nat[1] > 200 and nat[2] == 'data:image/png;base64,', nat
                shot = bcell.locator('.jp-OutputArea-output').first.screenshot()
                _save(shot, 'recording_browser.png')
                from PIL import Image
                import io
                px = np.asarray(Image.open(io.BytesIO(fig.screenshot())).convert('RGB'), dtype=float)
                assert px.std() > 20 and len(np.unique(px.reshape(-1, 3), axis=0)) > 500, "the browser's figure looks blank"
                title, last = _kernel_exec(page, "print(browser.fig.subfigs[0].axes[1].get_title()); print(browser.step.max)").strip().splitlines()[-2:]
                assert 'green circle' in title and f'step {last}' in title, title
            finally: browser.close()
    finally: _stop(proc)
    assert time.time() - t0 < 150, f"browser test took {time.time() - t0:.0f} s"
