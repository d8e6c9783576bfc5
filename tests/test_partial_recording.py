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
