"""Recordings never destroy what a user owns, work in both formats for every method, and report damage by name.

Faults are made for real: other processes holding the lock, bytes flipped inside a chunk, chunks and arrays deleted.
"""
import ast, re, shutil, subprocess, sys, textwrap, time
from pathlib import Path
import h5py
import numpy as np
import pytest
import torch
import xarray as xr
import layoutlab
from layoutlab.core.layout import Layout
from layoutlab.guidance.registry import method_names, preset
from layoutlab.core.models import tiny_pipeline
from layoutlab.core.record import Recorder, RecordingError, load_recording, partial_path, is_recording
from layoutlab.guidance.registry import sample

TOKS = ['<s>', 'a</w>', '</s>'] + ['</s>'] * 74

def hand_recording(path, steps=3, **kw):
    "A small recording written through Recorder (no model), finished."
    r = Recorder(path, layers=['mid'], **kw)
    r.begin(['mid'], TOKS, 3, (8, 8), dict(prompt='a'))
    for i in range(steps): r.step(900 - i, {'mid': torch.rand(2, 2, 64, 77).softmax(-1)}, energy=float(i))
    return r.finish()

# ---- 1. nothing a user owns is deleted or silently replaced ----

@pytest.mark.parametrize('name', ['recording.nc', 'recording.zarr'])
def test_foreign_path_is_refused_untouched(tmp_path, name):
    p = tmp_path/name
    if name.endswith('.zarr'): p.mkdir(); (p/'keep.txt').write_text('mine')
    else: p.write_text('mine')
    for ow in (False, True):
        with pytest.raises(RecordingError, match=re.escape(str(p)) + '.*not a layoutlab recording'): Recorder(p, overwrite=ow)
    assert (p/'keep.txt' if p.is_dir() else p).read_text() == 'mine'
    # a foreign file where the partial recording would go is refused too
    q = tmp_path/'other.nc'; partial_path(q).write_text('mine too')
    with pytest.raises(RecordingError, match='other.partial.nc exists and is not'): Recorder(q, overwrite=True)
    assert partial_path(q).read_text() == 'mine too'

def test_a_folder_is_not_a_recording_path(tmp_path):
    with pytest.raises(RecordingError, match='is a folder'): Recorder(tmp_path)

@pytest.mark.parametrize('ext', ['nc', 'zarr'])
def test_earlier_recording_needs_overwrite_and_survives_until_finish(tmp_path, ext):
    p = tmp_path/f'r.{ext}'
    hand_recording(p, steps=2)
    with pytest.raises(RecordingError, match='pass overwrite=True'): Recorder(p)
    assert load_recording(p).sizes['step'] == 2
    r = Recorder(p, layers=['mid'], overwrite=True)
    r.begin(['mid'], TOKS, 3, (8, 8), dict(prompt='b'))
    for i in range(4): r.step(900 - i, {'mid': torch.rand(2, 2, 64, 77).softmax(-1)})
    assert load_recording(p).sizes['step'] == 2            # the old one stays whole while the new one is written
    assert r.finish().sizes['step'] == 4
    assert load_recording(p).attrs['prompt'] == 'b'
    assert sorted(x.name for x in tmp_path.iterdir() if not x.name.startswith('.')) == [p.name]   # no leftovers

LOCKER = textwrap.dedent('''
    import sys, time, torch
    from layoutlab.core.record import Recorder
    r = Recorder(sys.argv[1], layers=['mid'])
    r.begin(['mid'], ['<s>', 'a</w>', '</s>'] + ['</s>'] * 74, 3, (8, 8), dict(prompt='first'))
    for i in range(3): r.step(900 - i, {'mid': torch.rand(2, 2, 64, 77).softmax(-1)})
    print('locked', flush=True)
    sys.stdin.readline()                                    # the test says when the second writer has tried
    for i in range(3, 6): r.step(900 - i, {'mid': torch.rand(2, 2, 64, 77).softmax(-1)})
    r.finish(); print('done', flush=True)
''')
SECOND = textwrap.dedent('''
    import sys
    from layoutlab.core.record import Recorder, RecordingError
    try: Recorder(sys.argv[1], overwrite=True)
    except RecordingError as e: print(f"error: {e}", file=sys.stderr); sys.exit(1)
''')

@pytest.mark.parametrize('ext', ['nc', 'zarr'])
def test_second_writer_fails_at_once_first_finishes(tmp_path, ext):
    p = tmp_path/f'r.{ext}'
    first = subprocess.Popen([sys.executable, '-c', LOCKER, str(p)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert first.stdout.readline().strip() == 'locked'
    t0 = time.time()
    second = subprocess.run([sys.executable, '-c', SECOND, str(p)], capture_output=True, text=True)
    assert second.returncode == 1 and time.time() - t0 < 30
    lines = [l for l in second.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and 'being written by another run' in lines[0], second.stderr
    out, err = first.communicate('go\n', timeout=120)
    assert first.returncode == 0 and out.strip() == 'done', err
    rec = load_recording(p)
    assert rec.sizes['step'] == 6 and rec.attrs['prompt'] == 'first'
    assert bool(rec['attention_8x8'].attention.notnull().all())

def test_lock_released_on_close_and_context_exit(tmp_path):
    p = tmp_path/'r.nc'
    r = Recorder(p, layers=['mid'])
    Recorder(p).close()                                     # a Recorder that has not begun holds no lock
    r.begin(['mid'], TOKS, 3, (8, 8), dict(prompt='a'))      # the run takes the lock when it begins
    with pytest.raises(RecordingError, match='another run'): Recorder(p, overwrite=True)
    r.close(); r.close()                                    # idempotent
    with Recorder(p, layers=['mid'], overwrite=True) as r2:
        r2.begin(['mid'], TOKS, 3, (8, 8), dict(prompt='a'))
        with pytest.raises(RecordingError, match='another run'): Recorder(p, overwrite=True)
    Recorder(p, overwrite=True).close()
    import layoutlab.core.record as record
    record._discard_recording(partial_path(p))              # what the begun runs left (no steps)
    with pytest.raises(ZeroDivisionError):
        with Recorder(p): 1 / 0                               # a caller failing before sampling
    Recorder(p).close()
    assert not p.exists() and not partial_path(p).exists()   # nothing was recorded, nothing written

# ---- the run's own error is the one raised; what was recorded stays ----

class Boom(Exception): pass

def test_error_in_run_is_not_hidden_and_partial_stays(tmp_path, recwarn):
    p = tmp_path/'r.zarr'
    def fail_at_2(state):
        if state.i == 2: raise Boom('the seam failed')
        return state.latents
    rec = Recorder(p)
    broken = rec.close
    def close_that_fails():                                 # closing itself goes wrong too
        rec.w.close = lambda: (_ for _ in ()).throw(OSError('disk gone'))
        broken()
    rec.close = close_that_fails
    with pytest.raises(Boom, match='the seam failed'):
        sample(tiny_pipeline('sd15'), 'a red circle', steps=4, before_step=fail_at_2, recorder=rec, progress=False)
    assert any('disk gone' in str(w.message) for w in recwarn)
    assert not p.exists() and load_recording(partial_path(p)).sizes['step'] == 2
    Recorder(p, overwrite=True).close()                      # the lock was released

# ---- no code path deletes what it did not create ----

def _deleting_calls():
    "(module, innermost enclosing function, line) of every call in the package that deletes a path."
    out = []
    for f in sorted(Path(layoutlab.__file__).parent.rglob('*.py')):
        tree = ast.parse(f.read_text())
        parent = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call): continue
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, 'id', '')
            if name not in ('rmtree', 'unlink', 'remove', 'rmdir', 'removedirs', 'truncate'): continue
            if name == 'remove' and not (isinstance(fn, ast.Attribute) and getattr(fn.value, 'id', '') == 'os'): continue  # list.remove
            up = node
            while up in parent and not isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef)): up = parent[up]
            out.append((f.stem, getattr(up, 'name', '<module>'), node.lineno))
    return out

GUARDED = (('record', '_discard_recording'), ('record', '_drop_lock'), ('cli', 'write_file'))   # what may delete, and why: below

def test_recorder_deletes_only_through_the_guarded_helper():
    calls = [c for c in _deleting_calls() if c[0] in ('record', 'loop', 'cli')]
    assert {(m, fn) for m, fn, _ in calls} == set(GUARDED), calls
    import inspect, layoutlab.core.record as record, layoutlab.ui.cli as cli   # the lock's own file, deleted while the lock is held
    assert 'Path(lock.lock_file).unlink' in inspect.getsource(record._drop_lock)
    assert 'if tmp.exists(): tmp.unlink()' in inspect.getsource(cli.write_file)   # only its own uniquely named temporary file
    src = (Path(layoutlab.__file__).parent/'core'/'record.py').read_text()
    assert "mode='w')" not in src and "'w')" not in src      # writers open exclusively ('w-'): never truncate

def test_no_module_deletes_outside_the_guarded_helper():
    calls = _deleting_calls()
    assert all((m, fn) in GUARDED for m, fn, _ in calls), calls

def test_discard_refuses_what_is_not_a_recording(tmp_path):
    from layoutlab.core.record import _discard_recording
    (tmp_path/'x.nc').write_text('mine')
    with pytest.raises(RecordingError, match='not a layoutlab recording'): _discard_recording(tmp_path/'x.nc')
    assert (tmp_path/'x.nc').read_text() == 'mine'

# ---- 2. every method in both formats ----

LAY = Layout('a red circle and a blue square', [dict(phrase='red circle', box=[.1, .1, .5, .5]),
                                                dict(phrase='blue square', box=[.5, .5, .9, .9])], seed=3)
FAST = dict(Guidance=dict(max_iterations=2), SpatialAware=dict(render_steps=2), GradSAMFromReference=dict(render_steps=2))

class Witness(Recorder):
    "A Recorder that also keeps what it was handed at each step, to check the file against."
    def step(self, timestep, maps=None, index=None, **values):
        self.seen = getattr(self, 'seen', {})
        self.seen[index] = {k: (v[1] if isinstance(v, tuple) else v) for k, v in values.items()}
        self.seen[index] = {k: np.asarray(v.detach().float().cpu() if torch.is_tensor(v) else v, dtype=float) for k, v in self.seen[index].items()}
        return super().step(timestep, maps, index=index, **values)

@pytest.fixture(scope='module')
def pipe(): return tiny_pipeline('sd15')

@pytest.mark.parametrize('method', method_names())
def test_every_method_records_in_both_formats(tmp_path, pipe, method):
    recs = {}
    for ext in ('nc', 'zarr'):
        seams, params = preset(method, pipe, **FAST)
        w = Witness(tmp_path/f'{method}.{ext}', layers='mid_block*attn2')
        res = sample(pipe, LAY, steps=3, recorder=w, method=method, params=params, progress=False, **seams)
        rec = load_recording(tmp_path/f'{method}.{ext}')
        assert rec.attrs['method'] == method and rec.attrs['steps_completed'] == len(w.seen) == rec.sizes['step']
        assert rec.step.values.tolist() == sorted(w.seen)
        names = set().union(*map(set, w.seen.values())) if w.seen else set()
        assert names <= set(rec.data_vars), names - set(rec.data_vars)
        for i, logged in w.seen.items():
            for k in names:
                got = np.asarray(rec[k].sel(step=i).values, dtype=float)
                if k in logged: np.testing.assert_allclose(got, logged[k], rtol=1e-6, equal_nan=True, err_msg=f"{ext} {k} step {i}")
                elif np.dtype(rec[k].dtype).kind == 'f': assert np.isnan(got).all(), f"{ext} {k} step {i} not logged but holds values"
        assert rec['attention_8x8'].attention.sizes['step'] == len(w.seen)
        recs[ext] = rec.load()
    a, b = recs['nc'], recs['zarr']
    assert set(a.data_vars) == set(b.data_vars)
    for k in a.data_vars: np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)
    if method != 'none': assert len(a.data_vars) > 0

# ---- 3. damage is detected and named ----

@pytest.fixture(scope='module')
def originals(tmp_path_factory, pipe):
    "A real guided recording in each format (tiny SD 1.5, layout_control, 3 steps)."
    d = tmp_path_factory.mktemp('orig')
    for ext in ('nc', 'zarr'):
        seams, params = preset('layout_control', pipe, **FAST)
        sample(pipe, LAY, steps=3, recorder=Recorder(d/f'r.{ext}'), method='layout_control', params=params, progress=False, **seams)
    return d

def _copy(originals, tmp_path, ext):
    src, dst = originals/f'r.{ext}', tmp_path/f'r.{ext}'
    (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    return dst

def test_flipped_bytes_in_netcdf_chunk(originals, tmp_path):
    p = _copy(originals, tmp_path, 'nc')
    good = load_recording(p).load()
    with h5py.File(p, 'r') as f: info = f['attention_16x16/attention'].id.get_chunk_info(1)   # the chunk of step 1
    data = bytearray(p.read_bytes())
    for k in range(info.byte_offset, info.byte_offset + min(2000, info.size - 8)): data[k] ^= 0xA5
    p.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match=re.escape(f"{p}: variable /attention_16x16/attention")): load_recording(p)
    lazy = load_recording(p, verify=False)                  # nothing read on opening: the error comes when dask reads
    np.testing.assert_array_equal(lazy['attention_16x16'].attention.isel(step=0).values, good['attention_16x16'].attention.isel(step=0).values)
    with pytest.raises(RecordingError, match='attention_16x16/attention cannot be read, the recording is damaged'):
        lazy['attention_16x16'].attention.isel(step=1).values
    with pytest.raises(RecordingError, match='attention_16x16/attention'): load_recording(p, lazy=False)

def test_flipped_bytes_in_netcdf_logged_value(originals, tmp_path):
    p = _copy(originals, tmp_path, 'nc')
    with h5py.File(p, 'r') as f: info = f['energy'].id.get_chunk_info(0)
    data = bytearray(p.read_bytes()); data[info.byte_offset] ^= 0x01; p.write_bytes(bytes(data))   # one bit
    with pytest.raises(RecordingError, match=re.escape(f"{p}: variable /energy")): load_recording(p)

def test_zarr_deleted_chunk(originals, tmp_path):
    p = _copy(originals, tmp_path, 'zarr')
    (p/'attention_8x8'/'attention'/'c'/'1'/'0'/'0'/'0'/'0').unlink()
    with pytest.raises(RecordingError, match=re.escape(f"{p}: variable /attention_8x8/attention has lost step 1")): load_recording(p)
    (tmp_path/'b').mkdir(); q = _copy(originals, tmp_path/'b', 'zarr')
    next((q/'energy'/'c'/'2').iterdir()).unlink()
    with pytest.raises(RecordingError, match=re.escape(f"{q}: variable /energy has lost step 2")): load_recording(q)

def test_zarr_corrupted_chunk(originals, tmp_path):
    p = _copy(originals, tmp_path, 'zarr')
    chunk = p/'attention_8x8'/'attention'/'c'/'2'/'0'/'0'/'0'/'0'
    b = bytearray(chunk.read_bytes()); b[len(b) // 3] ^= 0xFF; chunk.write_bytes(bytes(b))
    with pytest.raises(RecordingError, match=re.escape(f"{p}: variable /attention_8x8/attention cannot be read")): load_recording(p)
    lazy = load_recording(p, verify=False)
    assert lazy['attention_8x8'].attention.isel(step=1).notnull().all()
    with pytest.raises(RecordingError, match='attention_8x8/attention'): lazy['attention_8x8'].attention.mean().values

@pytest.mark.parametrize('ext', ['nc', 'zarr'])
def test_deleted_array(originals, tmp_path, ext):
    p = _copy(originals, tmp_path, ext)
    if ext == 'zarr': shutil.rmtree(p/'grad_norm')
    else:
        with h5py.File(p, 'a') as f: del f['grad_norm']
    with pytest.raises(RecordingError, match=re.escape(f"{p}: variable /grad_norm is missing")): load_recording(p)

def test_zarr_deleted_group(originals, tmp_path):
    p = _copy(originals, tmp_path, 'zarr')
    shutil.rmtree(p/'attention_16x16')
    with pytest.raises(RecordingError, match=re.escape(f"{p}: group /attention_16x16 is missing")): load_recording(p)

@pytest.mark.parametrize('engine', ['h5netcdf', 'zarr'])
def test_plain_xarray_file_with_step_is_not_a_recording(tmp_path, engine):
    ds = xr.Dataset({'loss': ('step', np.ones(3)), 'timestep': ('step', [3., 2., 1.])}, coords={'step': np.arange(3)})
    p = tmp_path/('x.nc' if engine == 'h5netcdf' else 'x.zarr')
    ds.to_netcdf(p, engine='h5netcdf') if engine == 'h5netcdf' else ds.to_zarr(p)
    with pytest.raises(RecordingError, match=re.escape(str(p)) + '.*not a layoutlab recording'): load_recording(p)
    assert not is_recording(p)
    with pytest.raises(RecordingError, match='not a layoutlab recording'): Recorder(p, overwrite=True)
    xr.testing.assert_identical(xr.open_dataset(p, engine=engine).load(), ds)   # still there, unchanged

def resign(p, **attrs):
    "Set root attributes of a NetCDF recording as its writer would, their checksums included."
    import json
    from layoutlab.core.record import _digest, CHECKSUMS_ATTR
    with h5py.File(p, 'a') as f:
        for k, v in attrs.items(): f.attrs[k] = v
        sums = json.loads(f.attrs[CHECKSUMS_ATTR]); sums['attrs'].update({k: _digest(v) for k, v in attrs.items()})
        f.attrs[CHECKSUMS_ATTR] = json.dumps(sums, sort_keys=True)

def test_steps_completed_cuts_a_half_written_step(originals, tmp_path):
    "A run killed between writing a step's data and counting it: the step does not count."
    p = _copy(originals, tmp_path, 'nc')
    resign(p, steps_completed=2)                            # as the writer left it: the count and its checksum
    rec = load_recording(p)
    assert rec.sizes['step'] == 2 and rec['attention_8x8'].attention.sizes['step'] == 2
    rec.close()
    resign(p, steps_completed=5)                            # says more than it holds
    with pytest.raises(RecordingError, match='holds 3 steps, the recording completed 5'): load_recording(p)
