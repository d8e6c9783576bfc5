"`layoutlab bench` on Dask with real processes: a worker killed mid-run, an interrupted command resumed, bad inputs."
import json, os, signal, socket, subprocess, sys, time
from pathlib import Path
import pytest
from typer.testing import CliRunner
from layoutlab.ui.cli import app

ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
TINY = ['--model', 'tiny-sd15', '--sweep-n', '0', '--no-progress']

def rows_of(path):
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()] if Path(path).exists() else []

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def wait_for(cond, timeout, what, procs=()):
    t0 = time.time()
    while not cond():
        for p in procs:
            if p.poll() is not None: raise AssertionError(f"{p.args[:3]} exited early ({p.returncode}) while waiting for {what}: {p.stdout.read() if p.stdout else ''}")
        if time.time() - t0 > timeout: raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)

def stop(procs):
    "End the processes this test started (each by its own pid / session)."
    for p in procs:
        if p.poll() is None:
            try: os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError: pass
        p.wait(timeout=30)

def expected_keys(n, methods):
    return {f"bench-L{k:05d}-{m}" for k in range(n) for m in ['none', *methods]}

def test_worker_killed_mid_run_costs_only_its_task(tmp_path):
    "A real scheduler and two worker processes on 127.0.0.1; one worker is SIGKILLed while it runs a task."
    from distributed import Client
    addr = f"tcp://127.0.0.1:{free_port()}"
    start = lambda *a: subprocess.Popen(list(a), env=ENV, cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs = [start('dask', 'scheduler', '--host', '127.0.0.1', '--port', addr.rsplit(':', 1)[1], '--no-dashboard')]
    try:
        for i in range(2): procs.append(start('dask', 'worker', addr, '--nthreads', '1', '--no-nanny', '--name', f'w{i}', '--no-dashboard'))
        workers = {p.pid: p for p in procs[1:]}
        methods = ['layout_control', 'ilgd']
        cli = start('layoutlab', 'bench', *TINY, '--n', '4', '--methods', ','.join(methods), '--steps', '4', '--scheduler', addr, '--out', str(tmp_path/'b.json'))
        procs.append(cli)
        with Client(addr, timeout='60s') as c:
            c.wait_for_workers(2, timeout=120)
            pids = c.run(os.getpid)                                          # worker address -> pid
            assert set(pids.values()) == set(workers)
            # kill a worker that has already made a row (its pipeline is loaded) while it is running a task
            victim = killed = None
            def busy_loaded():
                nonlocal victim, killed
                made = {r['pid'] for r in rows_of(tmp_path/'b.jsonl')}
                for a, keys in c.processing().items():
                    if keys and pids.get(a) in made:
                        victim, killed = pids[a], {str(k).split('@')[0] for k in keys}; return True
                return False
            wait_for(busy_loaded, 240, 'a loaded worker running a task', [cli])
            os.kill(victim, signal.SIGKILL)
        assert workers[victim].wait(timeout=30) == -signal.SIGKILL
        out, _ = cli.communicate(timeout=300)
        assert cli.returncode == 0, out
    finally: stop(procs)
    rows = rows_of(tmp_path/'b.jsonl')
    keys = [r['key'] for r in rows]
    assert sorted(keys) == sorted(expected_keys(4, methods))                 # every row present, exactly once
    survivor = (set(workers) - {victim}).pop()
    assert any(r['pid'] == survivor for r in rows if r['key'] in killed), (killed, rows)  # a task lost with the worker was redone elsewhere
    assert {r['loads'] for r in rows} == {1}                                 # each worker loaded the pipeline once
    res = json.loads((tmp_path/'b.json').read_text())
    assert [(s['method'], s['n']) for s in res['summary']] == [('none', 4), ('layout_control', 4), ('ilgd', 4)]

def test_interrupted_bench_resumes_without_recomputing(tmp_path):
    "SIGKILL the command mid-run; the same command again computes only the missing rows and keeps the others untouched."
    methods = ['layout_control', 'ilgd']
    cmd = ['layoutlab', 'bench', *TINY, '--n', '3', '--methods', ','.join(methods), '--steps', '3', '--workers', '1', '--out', str(tmp_path/'b.json')]
    stream = tmp_path/'b.jsonl'
    first = subprocess.Popen(cmd, env=ENV, cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: len(rows_of(stream)) >= 4, 240, '4 rows', [first])
        os.killpg(first.pid, signal.SIGKILL)                                  # the command and its local cluster, no cleanup
        first.wait(timeout=30)
    finally: stop([first])
    kept = stream.read_text()
    before = rows_of(stream)
    assert 4 <= len(before) < 9 and len({r['run'] for r in before}) == 1
    second = subprocess.run(cmd, env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stderr
    assert stream.read_text().startswith(kept)                               # finished rows untouched
    rows = rows_of(stream)
    assert sorted(r['key'] for r in rows) == sorted(expected_keys(3, methods))   # every row exactly once
    new = [r for r in rows if r['run'] != before[0]['run']]
    assert len(new) == 9 - len(before) and not {r['key'] for r in new} & {r['key'] for r in before}  # nothing recomputed
    assert f"resuming: {len(before)} rows already in {stream}" in second.stdout
    assert f"({len(new)} new)" in second.stdout

def one_line(r, text):
    lines = [l for l in r.output.splitlines() if l.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and text in lines[0], r.output

def test_bad_inputs_one_line_before_any_work(tmp_path):
    run = lambda *a: CliRunner().invoke(app, list(a))
    out = ['--out', str(tmp_path/'b.json')]
    one_line(run('bench', '--steps', '0', *out), '--steps must be an integer of at least 1, got 0')
    one_line(run('bench', '--n', '-5', '--sweep-n', '-1', *out), '--n must be an integer of at least 1, got -5')
    one_line(run('bench', '--n', '5', '--sweep-n', '-1', *out), '--sweep-n must be an integer of at least 0, got -1')
    one_line(run('bench', '--workers', '0', *out), '--workers must be an integer of at least 1')
    one_line(run('bench', '--methods', 'layout_control,magic', *out), "unknown method 'magic'")
    one_line(run('bench', '--regime', 'far', *out), "--regime must be one of away, near, random")
    one_line(run('sweep', '--param', 'Guidance.radius=1', *out), "Guidance has no field 'radius'")
    one_line(run('sweep', '--param', 'Guidance.r=0.1,x', *out), "bad value 'x' for Guidance.r")
    one_line(run('sweep', '--param', 'LossGuidance.eta=1,2', '--methods', 'winwinlay', *out), "winwinlay has no LossGuidance piece")
    # an existing stream of another configuration, or not ours at all: named, and left as it was
    row = dict(key='bench-L00000-none', config=dict(command='bench', model='tiny-sd15', steps=2), iou=0.0)
    (tmp_path/'b.jsonl').write_text(json.dumps(row) + '\n')
    one_line(run('bench', '--model', 'tiny-sd15', '--steps', '3', *out), f"{tmp_path/'b.jsonl'} holds rows of a different run")
    assert (tmp_path/'b.jsonl').read_text() == json.dumps(row) + '\n'
    (tmp_path/'c.jsonl').write_text('my notes\n')
    one_line(run('bench', '--out', str(tmp_path/'c.json')), f"{tmp_path/'c.jsonl'} line 1 is not JSON")
    assert (tmp_path/'c.jsonl').read_text() == 'my notes\n'
    (tmp_path/'d.json').write_text('{"mine": 1}')
    one_line(run('bench', '--out', str(tmp_path/'d.json')), "is not a layoutlab bench summary")
    assert not (tmp_path/'d.jsonl').exists()

def test_unreachable_scheduler_is_one_line(tmp_path):
    r = subprocess.run(['layoutlab', 'bench', *TINY, '--n', '1', '--scheduler', f'tcp://127.0.0.1:{free_port()}', '--out', str(tmp_path/'b.json')],
                       env=dict(ENV, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT='3s'), capture_output=True, text=True, timeout=120)
    lines = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith('[transformers]')]
    assert r.returncode == 1 and len(lines) == 1 and 'cannot reach the Dask scheduler at tcp://127.0.0.1:' in lines[0], r.stderr

def test_no_home_made_process_pool():
    "The package runs its parallel work on Dask only: no multiprocessing / concurrent.futures pool left."
    import layoutlab
    src = {str(p): p.read_text() for p in Path(layoutlab.__file__).parent.rglob('*.py')}
    assert len(src) > 20   # every module of every wing
    for pat in ('multiprocessing', 'ProcessPoolExecutor', 'mp.Pool', '.Pool(', 'os.fork'):
        assert not [n for n, s in src.items() if pat in s], pat

def test_swept_values_never_name_files_outside_record_and_failures_say_why(tmp_path):
    "Issue 25 row 3 and an unclear case: a swept value with '../' stays a file name inside --record; tasks that fail report their own error, not pandas'."
    rec, out = tmp_path/'a'/'b'/'c'/'R', tmp_path/'o'/'s.json'
    r = subprocess.run(['layoutlab', 'sweep', '--methods', 'ilgd', '--param', 'Injection.layers=nomatch,../../../escaped', '--record', str(rec),
                        '--model', 'tiny-sd15', '--n', '1', '--steps', '1', '--workers', '1', '--out', str(out), '--no-progress'],
                       env=ENV, capture_output=True, text=True, timeout=600)
    outside = [p for p in tmp_path.rglob('*') if not (p.is_relative_to(rec) or p.is_relative_to(out.parent) or p in rec.parents)]
    assert outside == [], outside                                            # nothing written outside R (or the --out folder)
    assert all('/' not in p.name and '..' not in p.relative_to(rec).parts for p in rec.iterdir())
    lines = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith('[transformers]')]
    assert r.returncode == 1 and 'Traceback' not in r.stderr and len(lines) == 1, r.stderr
    assert '2 tasks failed' in lines[0] and 'no attention layer of the model matches' in lines[0] and 'KeyError' not in lines[0], lines[0]

def test_a_garbage_line_keeps_the_good_rows(tmp_path):
    "Unclear case: one garbage line among good rows refused the whole resume; the good rows stay, the line is named in one warning, the rest reruns."
    from layoutlab.studies.tasks import _start, Task
    said = []
    start = lambda: _start('bench', 'tiny-sd15', None, 2, None, 0, 'away', None, tmp_path/'b.json', said.append, methods=['layout_control'])
    _, _, stream, spec = start()
    for k in range(3): stream.write(dict(key=Task('bench', k, 'none').key, config=spec['config'], iou=0.5))
    with open(stream.path, 'a') as f: f.write('\x00\x01 not a row\n')
    stream = start()[2]
    stream.write(dict(key=Task('bench', 3, 'none').key, config=spec['config'], iou=0.5))   # a later run appends after the bad line
    said.clear()
    done = start()[2].done
    assert sorted(done) == [Task('bench', k, 'none').key for k in range(4)]   # every good row kept: only the missing tasks run
    warn = [s for s in said if s.startswith('warning:')]
    assert len(warn) == 1 and f"{stream.path} line 4 is not JSON: skipped" in warn[0], said
    assert 'resuming: 4 rows' in ' '.join(said)
