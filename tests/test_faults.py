"""Faults made for real while a run records: a FIFO where the recording goes, a file-size limit, a full small disk.

Every check runs in a subprocess with a timeout, so a hang or a crash of the interpreter is a failed test, not a
stuck suite. Done means: one line naming the file and the cause, no signal, every finished step readable.
"""
import os, signal, subprocess, sys, textwrap
from pathlib import Path
import pytest
from layoutlab.core.record import load_recording, partial_path

def run(code, *args, timeout=240):
    "Run `code` in a fresh interpreter (this checkout's package first); a hang is a failed test."
    env = dict(os.environ, OMP_NUM_THREADS='1')               # the package the tests import (PYTHONPATH) is the one run
    try: return subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired: pytest.fail(f"hung for {timeout} s (opened a FIFO?)")

def error_lines(r): return [l for l in r.stderr.splitlines() if l.startswith('error: ')]

# ---- row 4: a FIFO (or any non-regular file) is refused before anything opens it ----

FIFO = textwrap.dedent('''
    import sys
    from layoutlab.core.record import Recorder, RecordingError, load_recording
    for f in (lambda: Recorder(sys.argv[1], overwrite=True), lambda: load_recording(sys.argv[2])):
        try: f(); print('no error')
        except RecordingError as e: print(f"error: {e}", file=sys.stderr)
''')

@pytest.mark.parametrize('which', ['final', 'partial'])
@pytest.mark.parametrize('ext', ['nc', 'zarr'])
def test_fifo_at_the_recording_path_is_refused(tmp_path, which, ext):
    p = tmp_path/f'recording.{ext}'
    fifo = p if which == 'final' else partial_path(p)
    os.mkfifo(fifo)
    r = run(FIFO, p, fifo, timeout=120)
    lines = error_lines(r)
    assert r.returncode == 0 and len(lines) == 2, r.stderr[-2000:]
    for l in lines: assert str(fifo) in l and 'FIFO' in l, l
    assert Path(fifo).is_fifo()                                # still there, untouched

# ---- row 5: a file-size limit and a full small disk while recording ----

FAULT = textwrap.dedent('''
    import resource, signal, sys
    from layoutlab.core.models import tiny_pipeline
    from layoutlab.guidance.registry import sample
    from layoutlab.core.record import Recorder, RecordingError
    path, limit, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pipe = tiny_pipeline('sd15')
    rec = Recorder(path, background={'inline': None, 'thread': True}[sys.argv[4] if len(sys.argv) > 4 else 'inline'])   # on the CPU the default writes inline
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # the write returns EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try: sample(pipe, 'a red circle', steps=steps, recorder=rec, progress=False)
    except RecordingError as e: print(f"error: {e}", file=sys.stderr); sys.exit(3)
    print('finished')
''')

def check_fault(r, p, causes):
    "No signal; either the run finished, or it ended with one line naming the file and the cause, and the partial recording holds the finished steps."
    assert r.returncode >= 0, f"killed by signal {-r.returncode}: {r.stderr[-1500:]}"
    if r.returncode == 0:
        rec = load_recording(p); n = rec.sizes['step']; rec.close(); return n
    assert r.returncode == 3, r.stderr[-1500:]
    lines = error_lines(r)
    assert len(lines) == 1, r.stderr[-1500:]
    assert str(partial_path(p)) in lines[0] and any(c in lines[0] for c in causes), lines[0]
    assert 'Traceback' not in r.stderr and r.stderr.count('could not be written') == 1, r.stderr[-1500:]   # said once
    rec = load_recording(partial_path(p))
    n = rec.sizes['step']
    assert n >= 1 and rec.attrs['steps_completed'] == n
    assert bool(rec['attention_8x8'].attention.load().notnull().all())   # every finished step whole
    rec.close()                                              # (the lazy tree holds the file: the disk must unmount)
    return n

@pytest.mark.parametrize('writer', ['inline', 'thread'])
@pytest.mark.parametrize('ext', ['nc', 'zarr'])
def test_file_size_limit(tmp_path, ext, writer):
    p = tmp_path/f'rec.{ext}'
    r = run(FAULT, p, 400_000, 20, writer)
    n = check_fault(r, p, ['File too large', 'file-size limit'])
    if ext == 'nc': assert r.returncode == 3 and n < 20      # the limit is reached: the .nc grows past 400 kB in 20 steps

@pytest.fixture
def small_disk(tmp_path):
    d = tmp_path/'disk'; d.mkdir()
    m = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=300k', 'tmpfs', str(d)], capture_output=True, text=True)
    if m.returncode: pytest.skip(f"cannot mount a small tmpfs here (needs root): {m.stderr.strip()}")
    yield d
    if subprocess.run(['umount', str(d)], capture_output=True).returncode: subprocess.run(['umount', '-l', str(d)], capture_output=True)

@pytest.mark.parametrize('ext', ['nc', 'zarr'])
def test_full_small_disk(small_disk, ext):
    p = small_disk/f'rec.{ext}'
    r = run(FAULT, p, 0, 30)
    n = check_fault(r, p, ['No space left'])
    assert r.returncode == 3 and n < 30                      # 300 kB cannot hold 30 steps
