"The README's commands, taken from README.md exactly as written, run on the bundled model in an empty folder."
import re, shlex, subprocess, time
from pathlib import Path
import pytest
from layoutlab.core.record import load_recording

README = Path(__file__).resolve().parents[1]/'README.md'

def blocks(lang:str)->list:
    "The fenced code blocks of one language in README.md, as written."
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), re.S | re.M)

def layoutlab_commands()->list:
    "The `layoutlab ...` lines of the README's shell blocks (install and test-suite lines are left to CI)."
    return [l.strip() for b in blocks('sh') for l in b.splitlines() if l.strip().startswith('layoutlab ')]

def test_readme_has_its_examples():
    assert len(blocks('python')) >= 2
    assert layoutlab_commands() == ['layoutlab generate two-shapes --method layout_control --out out']

def test_python_example_runs_a_guided_method_and_plots_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec(compile('\n'.join(blocks('python')), 'README.md', 'exec'), ns)
    rec, fig = ns['res'].recording, ns['fig']
    assert rec.attrs['method'] == 'layout_control' and rec.attrs['cfg'] == 5.0      # ShapesSD's calibrated scale
    assert rec.sizes['step'] == 20 and int(rec.energy.notnull().any('iteration').sum()) > 0
    assert len(fig.axes) == 1 * (6 + 1)                                               # one phrase, image + 6 steps

def test_shell_command_writes_image_recording_and_figure(tmp_path):
    (cmd,) = layoutlab_commands()
    t0 = time.time()
    r = subprocess.run(shlex.split(cmd), cwd=tmp_path, capture_output=True, text=True)
    took = time.time() - t0
    assert r.returncode == 0, r.stderr
    out = tmp_path/'out'
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith('.')) == ['attention.png', 'image.png', 'recording.nc']   # and the hidden lock file
    rec = load_recording(out/'recording.nc')
    assert (rec.attrs['method'], rec.attrs['cfg'], rec.sizes['step']) == ('layout_control', 5.0, 50)
    # quiet: only the sampler's progress bar on stderr, no library warnings or loading bars
    assert 'Loading pipeline components' not in r.stderr and 'torchvision' not in r.stderr and 'accelerate' not in r.stderr
    assert 'layout_control: 100%' in r.stderr
    print(f"{cmd}: {took:.1f} s wall")
