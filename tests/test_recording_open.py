"""`load_recording` reads NetCDF recordings with h5py (fast) and gets exactly what xarray's h5netcdf backend gets.

The fast reader names dimensions from NetCDF-4's dimension ids and decodes attributes as h5netcdf does; files it
cannot read that way (no `_Netcdf4Coordinates`, e.g. written by netCDF-C) go through xarray. Both paths must give the
same tree: same variables in the same order, coordinates, dims, dtypes, attributes (and their Python types), lazy
where the other is lazy, and the same values."""
import numpy as np
import pytest
import xarray as xr
from layoutlab.core import record as R
from layoutlab.core.layout import Layout
from layoutlab.core.models import tiny_pipeline
from layoutlab.guidance.registry import preset, sample

LAY = Layout('a red circle and a blue square', [dict(phrase='red circle', box=[.1, .1, .5, .5]),
                                                dict(phrase='blue square', box=[.5, .5, .9, .9])], seed=1)
CASES = {'winwinlay': dict(), 'heads': dict(heads=True), 'all_tokens': dict(tokens='all', float16=False), 'threaded': dict(background=True)}   # on the CPU the default writes inline: `threaded` runs the writer thread

@pytest.fixture(scope='module')
def pipe(): return tiny_pipeline('sd15')

@pytest.fixture(scope='module', params=list(CASES))
def recorded(request, pipe, tmp_path_factory):
    "A winwinlay run (iterations, objects, latent and attention grids, stop codes, strings) recorded with each option."
    p = tmp_path_factory.mktemp('open')/'r.nc'
    seams, params = preset('winwinlay', pipe, Guidance=dict(max_iterations=2))
    sample(pipe, LAY, steps=3, recorder=R.Recorder(p, **CASES[request.param]), method='winwinlay', params=params,
           progress=False, **seams).recording.close()
    return p

def through_xarray(monkeypatch):
    "Make the fast reader give up, as it does on a file h5netcdf did not write."
    def refuse(f): raise R._NotH5netcdf('forced')
    monkeypatch.setattr(R, '_netcdf_layout', refuse)

def types(d): return {k: type(v) for k, v in d.items()}

def assert_same(a, b):
    xr.testing.assert_identical(a, b)
    for node in a.subtree:
        x, y = node.to_dataset(inherit=False), b[node.path].to_dataset(inherit=False)
        assert list(x.variables) == list(y.variables) and list(x.coords) == list(y.coords), node.path
        assert types(x.attrs) == types(y.attrs), node.path
        for k in x.variables:
            u, v = x.variables[k], y.variables[k]
            assert (u.dims, u.dtype, type(u.data)) == (v.dims, v.dtype, type(v.data)), (node.path, k)
            assert types(u.attrs) == types(v.attrs), (node.path, k)
            assert {n: R._canon(w) for n, w in u.attrs.items()} == {n: R._canon(w) for n, w in v.attrs.items()}, (node.path, k)

@pytest.mark.parametrize('lazy', [True, False])
def test_fast_reader_equals_xarray(recorded, monkeypatch, lazy):
    with monkeypatch.context() as m:
        m.setattr(R, '_open_netcdf', lambda path: pytest.fail("the fast reader fell back to xarray"))
        fast = R.load_recording(recorded, lazy=lazy)
    with monkeypatch.context() as m:
        through_xarray(m)
        slow = R.load_recording(recorded, lazy=lazy)
    try: assert_same(fast, slow)
    finally: fast.close(); slow.close()

def test_cut_to_completed_steps(recorded, tmp_path):
    "A run killed after step 1 of 3 (steps_completed 2, rows of step 2 on disk): both readers show two steps."
    import h5py, shutil
    p = tmp_path/'cut.nc'; shutil.copy(recorded, p)
    with h5py.File(p, 'a') as f:
        sums = R.json.loads(f.attrs[R.CHECKSUMS_ATTR])
        f.attrs['steps_completed'] = np.int64(2)
        sums['attrs']['steps_completed'] = R._digest(np.int64(2))
        f.attrs[R.CHECKSUMS_ATTR] = R.json.dumps(sums, sort_keys=True)
    rec = R.load_recording(p)
    try:
        assert {n.sizes['step'] for n in rec.subtree} == {2}
        np.testing.assert_array_equal(rec.energy.values, R.load_recording(recorded).energy.values[:2])
    finally: rec.close()

def test_a_file_without_netcdf4_ids_goes_through_xarray(recorded, tmp_path):
    "Deleting `_Netcdf4Coordinates` from a variable (as netCDF-C leaves it on non-coordinate variables) falls back, same tree."
    import h5py, shutil
    p = tmp_path/'c.nc'; shutil.copy(recorded, p)
    with h5py.File(p, 'a') as f: del f['energy'].attrs['_Netcdf4Coordinates']
    with h5py.File(p, 'r') as f:
        with pytest.raises(R._NotH5netcdf): R._netcdf_layout(f)
    a, b = R.load_recording(p), R.load_recording(recorded)
    try: assert_same(a, b)
    finally: a.close(); b.close()

@pytest.mark.parametrize('method', ['none', 'layout_control', 'winwinlay', 'ilgd', 'gradsam', 'sali'])
def test_in_memory_recording_equals_the_file(pipe, tmp_path, method):
    "`Recorder()` builds its tree from the rows it kept; it must be what a NetCDF file of the same run reads back as."
    seams, params = preset(method, pipe)
    run = lambda rec: sample(pipe, LAY, steps=3, recorder=rec, method=method, params=params, progress=False, **seams).recording
    mem = run(R.Recorder())
    run(R.Recorder(tmp_path/'r.nc')).close()
    disk = R.load_recording(tmp_path/'r.nc', lazy=False)
    try: assert_same(mem, disk)
    finally: disk.close()

def test_extra_passes_only_add_what_they_say(pipe):
    "`Recorder(extra_passes=False)`: the same images, no split and no energy after the last update, fewer passes."
    from layoutlab.studies.perf import counting_passes
    import torch
    runs, passes = {}, {}
    for lean in (False, True):
        with counting_passes(pipe.unet) as n:
            runs[lean] = sample(pipe, LAY, 'winwinlay', steps=3, recorder=R.Recorder(extra_passes=not lean), progress=False,
                                Guidance=dict(max_iterations=2, guided_steps=2))
        passes[lean] = dict(n)
    full, lean = runs[False].recording, runs[True].recording
    assert torch.equal(runs[False].latents, runs[True].latents)
    assert (full.attrs['extra_passes'], lean.attrs['extra_passes']) == ('run', 'skipped')
    assert 'grad_norm_aef' in full and 'grad_norm_aef' not in lean and 'aef_first_order' not in lean
    e_full, e_lean = full['energy'].isel(step=0).values, lean['energy'].isel(step=0).values   # iterations 0, 1, 2 (after the last update)
    assert np.isfinite(e_full).all() and np.isfinite(e_lean[:2]).all() and np.isnan(e_lean[2])
    np.testing.assert_allclose(e_full[:2], e_lean[:2], rtol=1e-5)
    assert passes[True]['backward'] < passes[False]['backward'] and passes[True]['forward_1'] < passes[False]['forward_1']
    with pytest.raises(ValueError, match='extra_passes must be True or False'): R.Recorder(extra_passes='no')

@pytest.mark.parametrize('case', list(CASES))
def test_finish_hands_back_what_the_file_reads_as(pipe, tmp_path, case, monkeypatch):
    "`finish` returns the copy it kept while writing (no reading back): the tree `load_recording` reads from the file; too big to keep, it opens the file."
    seams, params = preset('winwinlay', pipe, Guidance=dict(max_iterations=2))
    run = lambda p: sample(pipe, LAY, steps=3, recorder=R.Recorder(p, **CASES[case]), method='winwinlay', params=params,
                           progress=False, **seams).recording
    with monkeypatch.context() as m:
        m.setattr(R, 'load_recording', lambda *a, **k: pytest.fail("finish read the file back"))
        kept = run(tmp_path/'kept.nc')
    disk = R.load_recording(tmp_path/'kept.nc', lazy=False)
    try: assert_same(kept, disk)
    finally: disk.close()
    monkeypatch.setattr(R, 'MIRROR_BYTES', 1000)             # a few rows: the copy is dropped during the run
    opened = run(tmp_path/'opened.nc')
    lazy = R.load_recording(tmp_path/'opened.nc')
    try:
        assert_same(opened, lazy)
        assert type(opened['attention_8x8'].attention.data).__module__.startswith('dask')
    finally: opened.close(); lazy.close()

NETCDF_C = """
import json, sys, numpy as np, netCDF4
d = netCDF4.Dataset(sys.argv[1]); d.set_auto_mask(False)
out = {}
def walk(g, path):
    for k, v in g.variables.items(): out[f"{path}/{k}"] = [list(v.dimensions), np.asarray(v[...]).tolist()]
    for name, sub in g.groups.items(): walk(sub, f"{path}/{name}")
walk(d, '')
print(json.dumps(out))
"""

def test_netcdf_c_reads_what_we_read(pipe, tmp_path):
    "netCDF-C (through netCDF4, in its own process: it brings its own HDF5) reads every variable with our dims and values."
    pytest.importorskip('netCDF4')
    import json, subprocess, sys
    p = tmp_path/'r.nc'
    sample(pipe, LAY, 'winwinlay', steps=3, recorder=R.Recorder(p, float16=False), progress=False,
           Guidance=dict(max_iterations=2)).recording.close()
    got = json.loads(subprocess.run([sys.executable, '-c', NETCDF_C, str(p)], capture_output=True, text=True, check=True).stdout)
    ours = R.load_recording(p, lazy=False)
    want = {f"{n.path.rstrip('/')}/{k}": v for n in ours.subtree for k, v in n.to_dataset(inherit=False).variables.items()}
    assert set(got) == set(want), set(got) ^ set(want)
    for k, v in want.items():
        dims, values = got[k]
        assert tuple(dims) == v.dims, k
        if v.dtype.kind in 'iuf': np.testing.assert_array_equal(np.asarray(values, v.dtype), v.values, err_msg=k)
        else: assert values == v.values.tolist(), k
