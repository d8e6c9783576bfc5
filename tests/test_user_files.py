"Nothing a user owns is overwritten by `layoutlab generate` (issue 25), and its defaults and options do what a newcomer expects (issue 24)."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
from layoutlab.core.record import load_recording

ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
TINY = ('--model', 'tiny-sd15', '--steps', '1')

def run(*args, timeout=600): return subprocess.run(['layoutlab', *args], capture_output=True, text=True, env=ENV, timeout=timeout)

def error_line(r):
    "The one line a refused command prints (after the libraries' own known chatter)."
    assert 'Traceback' not in r.stderr + r.stdout, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith('[transformers]')]
    assert len(lines) == 1, r.stderr
    return lines[0]

def user_files(d:Path, names=('image.png', 'attention.png')):
    "A folder holding the user's own files; returns {path: content}."
    d.mkdir(parents=True, exist_ok=True)
    owned = {}
    for n in names: (d/n).write_bytes(f'my own {n}'.encode()); owned[d/n] = (d/n).read_bytes()
    return owned

def test_outputs_are_never_written_through_a_symlink(tmp_path):
    "Row 1: image.png and attention.png as links to the user's photos; refused by name, with or without --overwrite."
    photos = user_files(tmp_path/'home', ('photo.png', 'other.png'))
    d = tmp_path/'D'; d.mkdir()
    (d/'image.png').symlink_to(tmp_path/'home'/'photo.png'); (d/'attention.png').symlink_to(tmp_path/'home'/'other.png')
    for extra in ((), ('--overwrite',)):
        r = run('generate', 'two-shapes', '--method', 'layout_control', '--out', str(d), *TINY, *extra)
        assert r.returncode == 1, r.stdout + r.stderr
        assert 'is a symbolic link; refusing to write through it' in error_line(r)
        assert all(p.read_bytes() == b for p, b in photos.items())           # the links' targets untouched
        assert not (d/'recording.nc').exists()                              # refused before anything was written

def test_existing_outputs_need_overwrite_and_are_replaced_whole(tmp_path):
    "Row 2: the user's image.png / attention.png are refused without --overwrite, before any model loads; --overwrite replaces them atomically."
    d = tmp_path/'D'
    owned = user_files(d)
    # a model that does not exist: the refusal must come first, so it names the file and not the model
    r = run('generate', 'two-shapes', '--out', str(d), '--model', 'no-such-org/no-such-model')
    assert r.returncode == 1
    line = error_line(r)
    assert 'attention.png already exists; pass --overwrite' in line and 'no-such-org' not in line, line
    assert all(p.read_bytes() == b for p, b in owned.items()) and sorted(os.listdir(d)) == ['attention.png', 'image.png']
    r = run('generate', 'two-shapes', '--out', str(d), *TINY, '--overwrite')
    assert r.returncode == 0, r.stderr
    assert (d/'image.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and (d/'attention.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert not [n for n in os.listdir(d) if n.endswith('.partial')]         # no temporary file left
    assert (d/'image.png').stat().st_mode & 0o044 == 0o044 & ~_umask()      # an ordinary file, not a private temp file

def _umask():
    m = os.umask(0); os.umask(m); return m

def test_write_file_is_atomic(tmp_path):
    "A write that fails half-way leaves the old file as it was and no temporary file."
    from layoutlab.ui.cli import write_file
    p = tmp_path/'image.png'; p.write_bytes(b'old')
    def half(tmp): tmp.write_bytes(b'half an im'); raise OSError('No space left on device')
    with pytest.raises(OSError): write_file(p, half, overwrite=True)
    assert p.read_bytes() == b'old' and os.listdir(tmp_path) == ['image.png']

def test_a_fifo_output_is_refused_by_name(tmp_path):
    "Unclear case: image.png as a FIFO gave 'File or stream is not seekable' without the file's name."
    d = tmp_path/'D'; d.mkdir(); os.mkfifo(d/'image.png')
    r = run('generate', 'two-shapes', '--out', str(d), *TINY, '--overwrite', '--no-figure', timeout=300)
    assert r.returncode == 1
    line = error_line(r)
    assert f"{d/'image.png'} exists and is not a regular file" in line, line
    assert not (d/'recording.nc').exists()

def test_ctrl_c_says_where_the_partial_recording_is(tmp_path):
    "Unclear case: Ctrl-C exited with no message; it now names the partial recording (kept, readable)."
    d = tmp_path/'D'
    p = subprocess.Popen(['layoutlab', 'generate', 'two-shapes', '--model', 'tiny-sd15', '--steps', '400', '--no-figure', '--out', str(d)],
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))   # a background shell ignores SIGINT in its children
    try:
        t0 = time.time()
        while not (d/'recording.partial.nc').exists():
            assert p.poll() is None, p.communicate()
            assert time.time() - t0 < 300, "the run never started recording"
            time.sleep(0.2)
        time.sleep(1)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None: p.kill(); p.wait()
    assert p.returncode == 130, err
    assert f"interrupted: the steps recorded so far are in {d/'recording.partial.nc'}" in err, err
    assert not (d/'image.png').exists()

def test_dtype_is_refused_with_the_choices(tmp_path):
    "Unclear case: --dtype banana fell back to float32 silently; generate and perf refuse it at once."
    for cmd in (('generate', 'two-shapes', '--out', str(tmp_path/'o')), ('perf', '--out', str(tmp_path/'p.json'))):
        r = run(*cmd, '--dtype', 'banana')
        assert r.returncode == 1 and "--dtype must be one of float32, float16, got 'banana'" in error_line(r), r.stderr
    assert not (tmp_path/'o').exists() and not (tmp_path/'p.json').exists()

def test_a_misspelt_method_gets_the_nearest_name(tmp_path):
    for cmd in (('generate', 'two-shapes', '--out', str(tmp_path/'o'), '--method', 'layout_contrl'),
                ('bench', '--methods', 'layout_contrl', '--out', str(tmp_path/'b.json'))):
        r = run(*cmd)
        assert r.returncode == 1 and "unknown method 'layout_contrl' (did you mean 'layout_control'?); available: none," in error_line(r), r.stderr

def test_boxes_default_to_a_layout_method_and_a_rerun_fails_at_once(tmp_path):
    "Issue 24 item 2 (a), (b): a layout with boxes runs layout_control unless asked; the README's next command into the same out/ fails before importing torch."
    d = tmp_path/'out'
    r = run('generate', 'two-shapes', '--out', str(d), *TINY, '--no-figure')
    assert r.returncode == 0, r.stderr
    assert load_recording(d/'recording.nc').attrs['method'] == 'layout_control'
    assert 'with method layout_control (the default for a layout with boxes' in r.stdout, r.stdout
    # the README's inline example, pasted next, writes to the same out/: refused at once, nothing imported
    code = ("import sys; from typer.testing import CliRunner; from layoutlab.ui.cli import app; "
            f"r = CliRunner().invoke(app, ['generate', '--prompt', 'a red circle and a blue square', '--box', 'red circle=0.1,0.1,0.5,0.5', '--out', {str(d)!r}]); "
            "print(r.exit_code, sorted({'torch', 'diffusers', 'transformers'} & set(sys.modules))); print(r.output)")
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=ENV)
    assert p.stdout.splitlines()[0] == '1 []' and 'already exists; pass --overwrite' in p.stdout, p.stdout + p.stderr
    r = run('generate', 'two-shapes', '--out', str(d), *TINY, '--no-figure', '--overwrite', '--method', 'none')
    assert r.returncode == 0 and load_recording(d/'recording.nc').attrs['method'] == 'none', r.stderr

def test_generate_param_sets_a_piece_field(tmp_path):
    "Issue 24 item 2 (c): --param PIECE.FIELD=VALUE, parsed as sweep parses it, reaches sample(..., PIECE=dict(FIELD=VALUE))."
    d = tmp_path/'o'
    r = run('generate', 'two-shapes', '--out', str(d), *TINY, '--no-figure', '--method', 'layout_control',
            '--param', 'Guidance.step_scale=0.25', '--param', 'Guidance.max_iterations=2')
    assert r.returncode == 0, r.stderr
    g = json.loads(load_recording(d/'recording.nc').attrs['params'])['before_step']
    assert (g['piece'], g['step_scale'], g['max_iterations']) == ('Guidance', 0.25, 2)
    bad = lambda *p: error_line(run('generate', 'two-shapes', '--out', str(tmp_path/'x'), '--method', 'layout_control', *p))
    assert 'layout_control has no LossGuidance piece' in bad('--param', 'LossGuidance.eta=1')
    assert 'Guidance has no field' in bad('--param', 'Guidance.nope=1')
    assert 'unknown piece' in bad('--param', 'Guidence.r=1')
    assert 'generate takes one value' in bad('--param', 'Guidance.r=0.1,0.2')
    assert not (tmp_path/'x').exists()
