"The installed `layoutlab` command, end to end, as a user runs it."
import subprocess, json
import pytest
from layoutlab.core.record import load_recording

def run(*args, cwd=None): return subprocess.run(['layoutlab', *args], capture_output=True, text=True, cwd=cwd)

def _layout(tmp_path, **obj):
    d = {"prompt": "a red circle and a blue square", "objects": [dict(dict(phrase="red circle", box=[.1, .1, .5, .5]), **obj)], "seed": 0}
    p = tmp_path/'l.json'; p.write_text(json.dumps(d)); return p

def test_generate_tiny_sd15_and_sdxl(tmp_path):
    for model in ('tiny-sd15', 'tiny-sdxl'):
        r = run('generate', str(_layout(tmp_path)), '--model', model, '--out', str(tmp_path/model), '--steps', '3', '--seed', '7')
        assert r.returncode == 0, r.stderr
        assert (tmp_path/model/'image.png').stat().st_size > 0
        rec = load_recording(tmp_path/model/'recording.nc')
        assert rec.sizes["step"] == 3 and rec.attrs["seed"] == 7 and rec.attrs["cfg"] == 7.5   # the tiny models: SD's default scale
        assert (tmp_path/model/'attention.png').exists()
        assert "Loading pipeline components" not in r.stderr and "torchvision" not in r.stderr

def test_generate_zarr(tmp_path):
    r = run('generate', str(_layout(tmp_path)), '--model', 'tiny-sd15', '--out', str(tmp_path/'z'), '--steps', '2', '--format', 'zarr')
    assert r.returncode == 0, r.stderr
    assert load_recording(tmp_path/'z'/'recording.zarr').sizes['step'] == 2

def _one_line_error(r, text):
    assert r.returncode == 1
    assert 'Traceback' not in r.stderr and 'Traceback' not in r.stdout
    lines = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith('[transformers]')]
    assert len(lines) == 1 and text in lines[0], r.stderr

def test_bad_inputs_give_one_clear_line(tmp_path):
    gen = lambda p, *a: run('generate', str(p), '--model', 'tiny-sd15', '--out', str(tmp_path/'o'), '--steps', '2', *a)
    _one_line_error(gen(_layout(tmp_path, box=[.1, .1, 1.5, .5])), 'outside [0, 1]')
    _one_line_error(gen(_layout(tmp_path, box=[.5, .1, .2, .5])), 'x1 < x0')
    _one_line_error(gen(_layout(tmp_path, box=[.5, .1, .5, .5])), 'zero area')
    _one_line_error(gen(_layout(tmp_path, phrase='green triangle')), 'not in the prompt')
    _one_line_error(gen(tmp_path/'missing.json'), 'not found')
    p = tmp_path/'long.json'; p.write_text(json.dumps({"prompt": "circle " * 90, "objects": []}))
    _one_line_error(gen(p), 'at most 77')
    _one_line_error(gen(_layout(tmp_path), '--format', 'csv'), 'nc or zarr')
    r = run('generate', str(_layout(tmp_path)), '--model', 'no-such-org/no-such-model', '--out', str(tmp_path/'o'))
    _one_line_error(r, "cannot load 'no-such-org/no-such-model'")

def test_bench_in_worker_processes(tmp_path):
    "`layoutlab bench` with a sweep and two worker processes: every layout's rows, streamed and summarised."
    out = tmp_path/'b.json'
    r = run('bench', '--model', 'tiny-sd15', '--n', '3', '--sweep-n', '1', '--workers', '2', '--steps', '2',
            '--methods', 'layout_control', '--out', str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert [(x['layout'], x['method']) for x in res['rows']] == [(k, m) for k in range(3) for m in ('none', 'layout_control')]
    assert [s['n'] for s in res['summary']] == [3, 3]
    assert set(res['overrides']) == {'layout_control'} and len(res['sweep']) == 5   # per-method calibration (issue 10)
    streamed = [json.loads(l) for l in (tmp_path/'b.jsonl').read_text().splitlines()]
    assert sorted(x['part'] for x in streamed) == ['bench'] * 6 + ['calib'] * 6      # its own layout (disjoint seed) and 5 values

def test_bench_unknown_model_is_one_line(tmp_path):
    _one_line_error(run('bench', '--model', 'no-such-org/no-such-model', '--out', str(tmp_path/'b.json')), 'no-such-org')

def test_help_is_fast_and_imports_no_torch():
    "`--help` needs under a second (median of 5 runs): the CLI module imports only typer at the top."
    import resource, statistics, sys, time
    r = subprocess.run([sys.executable, '-c', "import sys, layoutlab.ui.cli; print(sorted({'torch', 'diffusers', 'transformers', 'xarray'} & set(sys.modules)))"],
                       capture_output=True, text=True)
    assert r.stdout.strip() == '[]', r.stdout + r.stderr
    cpu = lambda: (lambda u: u.ru_utime + u.ru_stime)(resource.getrusage(resource.RUSAGE_CHILDREN))
    for args in (['--help'], ['generate', '--help']):
        walls, cpus = [], []
        for _ in range(5):
            t0, c0 = time.perf_counter(), cpu(); r = run(*args)
            walls.append(time.perf_counter() - t0); cpus.append(cpu() - c0)
            assert r.returncode == 0
        # CPU seconds, not wall: on a shared machine the wall time mostly measures the other processes
        assert statistics.median(cpus) < 1.0, (args, cpus)
        print(f"layoutlab {' '.join(args)}: median {statistics.median(walls):.2f} s wall, {statistics.median(cpus):.2f} s CPU")
    assert all(s in r.stdout for s in ('"objects"', 'two-shapes', '--box', '--prompt'))

def test_shipped_layouts_and_inline_layouts(tmp_path):
    r = run('layouts')
    assert r.returncode == 0 and [l.split()[0] for l in r.stdout.splitlines()] == ['left-right', 'one-shape', 'three-shapes', 'top-bottom', 'two-shapes']
    r = run('generate', 'three-shapes', '--model', 'tiny-sd15', '--out', str(tmp_path/'a'), '--steps', '2', '--no-figure')
    assert r.returncode == 0, r.stderr
    assert json.loads(load_recording(tmp_path/'a'/'recording.nc').attrs['layout'])['prompt'] == 'a yellow triangle, a green circle and a blue square'
    assert not (tmp_path/'a'/'attention.png').exists()
    r = run('generate', '--prompt', 'a red circle and a blue square', '--box', 'red circle=0.1,0.1,0.5,0.5', '--box', 'blue square=0.5,0.5,0.9,0.9',
            '--model', 'tiny-sd15', '--out', str(tmp_path/'b'), '--steps', '2', '--seed', '4')
    assert r.returncode == 0, r.stderr
    rec = load_recording(tmp_path/'b'/'recording.nc')
    assert json.loads(rec.attrs['layout'])['objects'][1] == dict(phrase='blue square', box=[.5, .5, .9, .9]) and rec.attrs['seed'] == 4
    gen = lambda *a: run('generate', *a, '--model', 'tiny-sd15', '--out', str(tmp_path/'c'), '--steps', '2')
    _one_line_error(gen('--prompt', 'a red circle', '--box', 'red circle:0.1,0.1,0.5,0.5'), '--box must look like')
    _one_line_error(gen('--prompt', 'a red circle', '--box', 'green circle=0.1,0.1,0.5,0.5'), 'not in the prompt')
    _one_line_error(gen(), 'give a LAYOUT')
    _one_line_error(gen('two-shape'), 'shipped layouts: left-right')
    _one_line_error(gen('two-shapes', '--prompt', 'a red circle'), 'not both')
    _one_line_error(gen('two-shapes', '--cfg', '-1'), 'cfg must be a finite number >= 0')

def _recorder_can_refuse():
    import inspect
    from layoutlab.core.record import Recorder
    return 'overwrite' in inspect.signature(Recorder).parameters

@pytest.mark.skipif(not _recorder_can_refuse(), reason="Recorder(overwrite=...) is not in this checkout")
def test_an_existing_recording_needs_overwrite(tmp_path):
    "The refusal comes before the model loads (one line, no progress bar); --overwrite replaces the recording."
    args = ('generate', 'two-shapes', '--model', 'tiny-sd15', '--out', str(tmp_path), '--steps', '1', '--no-figure')
    assert run(*args).returncode == 0
    _one_line_error(run(*args), 'overwrite')
    r = run(*args, '--overwrite', '--seed', '5')
    assert r.returncode == 0, r.stderr
    assert load_recording(tmp_path/'recording.nc').attrs['seed'] == 5
