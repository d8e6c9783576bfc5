"Fixtures shared by the test files."
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture
def generate_cli(tmp_path):
    "`generate(method, *args)`: `layoutlab generate two-shapes --method METHOD --steps 4 --no-figure *args` in a fresh process; the recording it wrote."
    def generate(method, *args):
        from layoutlab.core.record import load_recording
        env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
        r = subprocess.run([sys.executable, '-c', 'from layoutlab.ui.cli import app; app(prog_name="layoutlab")', 'generate', 'two-shapes',
                            '--method', method, '--steps', '4', '--no-figure', '--out', str(tmp_path/'out'), *args], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        assert (tmp_path/'out'/'image.png').stat().st_size > 0
        rec = load_recording(tmp_path/'out'/'recording.nc')
        assert rec.attrs['method'] == method
        return rec
    return generate
