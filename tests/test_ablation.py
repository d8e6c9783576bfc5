"The ablation study's commands end to end on tiny runs: calibrate on disjoint seeds, bench with per-method values, the ablation report."
import json, os, subprocess
from pathlib import Path
import pytest
from typer.testing import CliRunner
from layoutlab.ui.cli import app

ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
TINY = ['--model', 'tiny-sd15', '--steps', '2', '--workers', '1', '--no-progress']

def cli(*args, cwd):
    return subprocess.run(['layoutlab', *args], env=ENV, cwd=cwd, capture_output=True, text=True, timeout=500)

def one_line(res, text):
    assert res.returncode == 1, res.stdout + res.stderr
    err = [l for l in res.stderr.splitlines() if l.startswith('error:')]
    assert len(err) == 1 and text in err[0], res.stderr

def test_calibrate_then_bench_then_report(tmp_path):
    r = cli('calibrate', *TINY, '--n', '1', '--methods', 'aef_adaptive,ilgd', '--objects', '3', '--out', 'calib.json', cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    cal = json.loads((tmp_path/'calib.json').read_text())
    assert set(cal['calibration']) == {'aef_adaptive', 'ilgd'} and cal['seed0'] == 30_000_000 and cal['n'] == 1
    assert all(len(v['values']) >= 4 and isinstance(v['edge'], bool) for v in cal['report'].values())
    assert {r['layout_json']['seed'] for r in map(json.loads, (tmp_path/'calib.jsonl').read_text().splitlines()) if r['method'] == 'none'} == {30_000_000}
    assert 'at grid edge' in r.stdout
    methods = 'aef_adaptive,naef_adaptive,ilgd'
    b = cli('bench', *TINY, '--n', '2', '--calibration', 'calib.json', '--methods', methods, '--out', 'ablation_away_shapes.json', cwd=tmp_path)
    assert b.returncode == 0, b.stdout + b.stderr
    res = json.loads((tmp_path/'ablation_away_shapes.json').read_text())
    assert res['overrides'] == {'aef_adaptive': cal['calibration']['aef_adaptive'], 'naef_adaptive': {}, 'ilgd': cal['calibration']['ilgd']}
    assert {r['layout_json']['seed'] for r in res['rows'] if r['method'] == 'none'} == {20_000_000, 20_000_001}
    assert all(isinstance(r['detections'], list) for r in res['rows'])
    assert all('inside_step0' in r['split'] for r in res['rows'] if r['method'] in ('aef_adaptive', 'naef_adaptive'))
    assert not any('split' in r for r in res['rows'] if r['method'] in ('none', 'ilgd'))
    again = cli('bench', *TINY, '--n', '2', '--calibration', 'calib.json', '--methods', methods, '--out', 'ablation_away_shapes.json', cwd=tmp_path)
    assert again.returncode == 0 and '(0 new)' in again.stdout and 'resuming: 8 rows' in again.stdout, again.stdout + again.stderr
    from layoutlab.studies.ablation import regime_report
    rep = regime_report(tmp_path/'ablation_away_shapes.json', n_resamples=20)
    assert [t['method'] for t in rep['table']] == ['none', 'aef_adaptive', 'naef_adaptive', 'ilgd']
    assert [t['n'] for t in rep['table']] == [2, 2, 2, 2]
    assert {(i['a'], i['b']) for i in rep['intervals']} == {('naef_adaptive', 'aef_adaptive')}
    assert all(i['lo'] <= i['diff'] <= i['hi'] or i['measure'] != 'mean_iou' for i in rep['intervals'])
    # the evaluated seeds must not overlap the calibration's
    one_line(cli('bench', *TINY, '--n', '2', '--seed0', '29999999', '--calibration', 'calib.json', '--methods', methods, '--out', 'x.json', cwd=tmp_path),
             'overlap the evaluated seeds')
    one_line(cli('bench', *TINY, '--n', '2', '--sweep-n', '2', '--calibration', 'calib.json', '--out', 'x.json', cwd=tmp_path), 'not both')
    (tmp_path/'bad.json').write_text('{"a": 1}')
    one_line(cli('bench', *TINY, '--n', '2', '--calibration', 'bad.json', '--out', 'x.json', cwd=tmp_path), 'is not a `layoutlab calibrate` result')
    assert not (tmp_path/'x.jsonl').exists()

def test_bad_objects_and_methods_are_one_line(tmp_path):
    one_line(cli('bench', *TINY, '--n', '2', '--objects', '5', '--sweep-n', '0', '--out', 'x.json', cwd=tmp_path), '--objects must be counts from 1 to 4')
    one_line(cli('bench', *TINY, '--n', '2', '--objects', 'three', '--out', 'x.json', cwd=tmp_path), '--objects must be counts like 2 or 3,4')
    one_line(cli('calibrate', *TINY, '--n', '2', '--methods', 'sali', '--out', 'c.json', cwd=tmp_path), 'no calibration grid for sali')

def test_study_ablation_prints_resumable_commands():
    r = CliRunner().invoke(app, ['study-ablation', '--out', 'images', '--workers', '2'])
    assert r.exit_code == 0, r.output
    lines = [l for l in r.output.splitlines() if l.startswith('layoutlab ')]
    assert [l.split()[1] for l in lines] == ['calibrate', 'bench', 'bench', 'bench', 'bench', 'sweep', 'sweep', 'sweep']
    assert all('--out images/' in l for l in lines) and 'CPU-min' in r.output
    assert '--calibration images/ablation_calib_shapes.json' in lines[1] and '--regime away' in lines[1]
