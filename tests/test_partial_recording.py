"A run killed mid-way leaves a readable (partial) recording holding the steps it finished."
import subprocess, sys, signal, textwrap
import pytest
from layoutlab.core.record import load_recording, partial_path, Recorder, RecordingError

SCRIPT = textwrap.dedent('''
    import os, signal, sys
    from layoutlab.core.models import tiny_pipeline
    from layoutlab.guidance.registry import sample
    from layoutlab.core.record import Recorder
    path, k = sys.argv[1], int(sys.argv[2])
    def die(state):
        if state.i == k: os.kill(os.getpid(), signal.SIGKILL)
        return state.latents
    sample(tiny_pipeline("sd15"), "a red circle", steps=8, before_step=die, recorder=Recorder(path), progress=False)
''')

@pytest.mark.parametrize('ext', ['nc', 'zarr'])
def test_killed_run_leaves_k_steps(tmp_path, ext):
    path, k = tmp_path/f'rec.{ext}', 3
    r = subprocess.run([sys.executable, '-c', SCRIPT, str(path), str(k)], capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()[-500:]
    assert not path.exists()                                   # an unfinished run never takes the final name
    with pytest.raises(RecordingError, match='unfinished one is at'): load_recording(path)
    rec = load_recording(partial_path(path))
    assert rec.sizes['step'] == k and rec.attrs['steps_completed'] == k
    att = rec['attention_8x8'].attention.load()
    assert att.sizes['step'] == k and bool(att.notnull().all())
    # the killed process's lock died with it; the unfinished recording is replaced only when asked
    with pytest.raises(RecordingError, match='overwrite'): Recorder(path)
    Recorder(path, overwrite=True).close()

def test_truncated_file_is_a_clear_error(tmp_path):
    src = tmp_path/'full.nc'
    subprocess.run([sys.executable, '-c', SCRIPT, str(src), '99'], check=True, capture_output=True)
    cut = tmp_path/'cut.nc'
    data = src.read_bytes(); cut.write_bytes(data[:len(data)//3])
    with pytest.raises(RecordingError, match='cut.nc'): load_recording(cut)

BATCHED = textwrap.dedent('''
    import os, signal, sys
    from layoutlab.core.models import tiny_pipeline
    from layoutlab.guidance.registry import sample
    from layoutlab.core.record import Recorder
    path, k, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    def die(state):
        if state.i == k:
            if how == 'kill': os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError('stopped on purpose')
        return state.latents
    sample(tiny_pipeline("sd15"), "a red circle", steps=8, before_step=die, recorder=Recorder(path, flush_every=4), progress=False)
''')

@pytest.mark.parametrize('how', ['kill', 'error'])
def test_flush_every_loses_at_most_the_held_steps(tmp_path, how):
    "With flush_every=4, a run killed after 6 steps keeps the 4 written; one stopped by an error writes all 6 on its way out."
    path = tmp_path/'rec.nc'
    r = subprocess.run([sys.executable, '-c', BATCHED, str(path), '6', how], capture_output=True)
    assert r.returncode == (-signal.SIGKILL if how == 'kill' else 1), r.stderr.decode()[-500:]
    rec = load_recording(partial_path(path))
    k = 4 if how == 'kill' else 6
    assert rec.sizes['step'] == k and rec.attrs['steps_completed'] == k
    assert bool(rec['attention_8x8'].attention.load().notnull().all()) and rec.step.values.tolist() == list(range(k))

def test_flush_every_must_be_a_positive_integer():
    for bad in (0, 2.5, True, '4'):
        with pytest.raises(ValueError, match='flush_every must be an integer >= 1'): Recorder(flush_every=bad)
