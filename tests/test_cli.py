"The installed `layoutlab` command, end to end, as a user runs it."
import subprocess, json
from layoutlab.record import load_recording

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
        assert rec.sizes['step'] == 3 and rec.attrs['seed'] == 7

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
    assert set(res['overrides']) == {'Guidance', 'LossGuidance'} and len(res['sweep']) == 15
    streamed = [json.loads(l) for l in (tmp_path/'b.jsonl').read_text().splitlines()]
    assert sorted(x['part'] for x in streamed) == ['bench'] * 6 + ['sweep'] * 15

def test_bench_unknown_model_is_one_line(tmp_path):
    _one_line_error(run('bench', '--model', 'no-such-org/no-such-model', '--out', str(tmp_path/'b.json')), 'no-such-org')
