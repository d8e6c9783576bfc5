"Recordings describe themselves: plain xarray opens them with the same structure, CF attributes and flag meanings."
import json
import numpy as np
import pytest
import torch
import xarray as xr
from layoutlab.core.layout import Layout
from layoutlab.guidance.registry import preset
from layoutlab.guidance.methods import STOP_CODES
from layoutlab.core.models import tiny_pipeline
from layoutlab.core.record import Recorder, load_recording, describe, schema_table, VARIABLES, FLAGS, SCHEMA_ATTR, SCHEMA_VERSION, CONVENTIONS
from layoutlab.guidance.registry import sample

LAY = Layout('a red circle and a blue square', [dict(phrase='red circle', box=[.1, .1, .5, .5]),
                                                dict(phrase='blue square', box=[.5, .5, .9, .9])], seed=1)

def plain(path):
    return xr.open_datatree(path, engine='zarr', consolidated=False) if path.suffix == '.zarr' else xr.open_datatree(path, engine='h5netcdf')   # xarray's default engine, netcdf4 when installed, cannot read float16 attention

@pytest.fixture(scope='module', params=['nc', 'zarr'])
def recorded(request, tmp_path_factory):
    "A winwinlay run (iterations, objects, latent and attention grids, stop codes) in each format."
    pipe = tiny_pipeline('sd15')
    p = tmp_path_factory.mktemp('schema')/f'r.{request.param}'
    seams, params = preset('winwinlay', pipe, Guidance=dict(max_iterations=2))
    sample(pipe, LAY, steps=2, recorder=Recorder(p), method='winwinlay', params=params, progress=False, **seams)
    return p

def test_plain_xarray_sees_the_structure_of_load_recording(recorded):
    a, b = plain(recorded), load_recording(recorded)
    assert sorted(a.groups) == sorted(b.groups)
    for g in a.groups:
        x, y = a[g].to_dataset(inherit=False), b[g].to_dataset(inherit=False)
        assert set(x.coords) == set(y.coords), g
        assert set(x.data_vars) == set(y.data_vars), g
        for k in x.variables: assert x[k].dims == y[k].dims, (g, k)
    assert 'timestep' in a.coords and 'timestep' not in a.data_vars
    for g in a.groups:
        if g.startswith('/attention_'): assert 'token_text' in a[g].coords and 'token_text' not in a[g].data_vars

def test_root_attrs_and_every_variable_described(recorded):
    a = plain(recorded)
    assert a.attrs['Conventions'] == CONVENTIONS == 'CF-1.10'
    assert int(np.ravel(a.attrs[SCHEMA_ATTR])[0]) == SCHEMA_VERSION
    assert int(np.ravel(a.attrs['steps_completed'])[0]) == a.sizes['step'] == 2
    for node in a.subtree:
        for k, v in node.to_dataset(inherit=False).variables.items():
            assert v.attrs.get('long_name'), (node.path, k)
            assert v.attrs['long_name'] == VARIABLES[k][0], k      # everything winwinlay logs is in the registry
            if VARIABLES[k][1] is not None: assert v.attrs['units'] == VARIABLES[k][1], k
            else: assert 'units' not in v.attrs, k
    assert a['attention_8x8'].attention.attrs['units'] == '1'

def test_stop_flags_say_what_the_codes_mean(recorded):
    stop = plain(recorded).stop
    values = np.atleast_1d(stop.attrs['flag_values']).tolist()
    meanings = stop.attrs['flag_meanings'].split()
    assert values == sorted(set(STOP_CODES.values())) and len(meanings) == len(values)
    means = dict(zip(values, meanings))
    assert means[STOP_CODES['energy']] == 'energy_below_threshold' and means[STOP_CODES['iterations']] == 'max_iterations_reached'
    assert set(stop.values.tolist()) <= set(values)
    assert stop.values.tolist() == [STOP_CODES['iterations']] * 2  # winwinlay runs every iteration (no threshold)

def test_coordinates_of_objects_iterations_and_grids(recorded):
    a = plain(recorded)
    assert [str(p) for p in a.phrase.values] == ['red circle', 'blue square'] and a.phrase.dims == ('object',)
    assert a.object.values.tolist() == [0, 1]
    assert 'phrase' in a.energy_object.coords
    assert a.iteration.values.tolist() == list(range(a.sizes['iteration']))
    for d in ('lat_y', 'lat_x', 'att_y', 'att_x'):
        n = a.sizes[d]
        np.testing.assert_allclose(a[d].values, (np.arange(n) + .5) / n)
    g = a['attention_16x16']
    np.testing.assert_allclose(g.y.values, (np.arange(16) + .5) / 16)
    assert g.layer.size == g.attention.sizes['layer'] and g.token.values.tolist() == list(range(g.sizes['token']))

def test_schema_table_lists_every_variable(recorded):
    rec = load_recording(recorded)
    table = schema_table(rec)
    for node in rec.subtree:
        for k in node.to_dataset(inherit=False).variables: assert f"| {node.path} | `{k}` |" in table, k
    assert '2=max_iterations_reached' in table

@pytest.mark.parametrize('ext', ['nc', 'zarr'])
def test_x0_pred_and_unknown_names(tmp_path, ext):
    "The predicted clean latent as the sampler will log it, and a value the registry does not know."
    p = tmp_path/f'x.{ext}'
    r = Recorder(p, layers=None)
    r.begin([], ['<s>', 'a</w>', '</s>'] + ['</s>'] * 74, 3, (6, 8), dict(prompt='a', layout=LAY.to_json()))
    x0 = [torch.randn(4, 6, 8) for _ in range(3)]
    for i in range(3): r.step(900 - i, x0_pred=(('channel', 'latent_y', 'latent_x'), x0[i]), my_metric=float(i))
    r.finish()
    a = plain(p)
    assert a.x0_pred.dims == ('step', 'channel', 'latent_y', 'latent_x')
    np.testing.assert_allclose(a.x0_pred.values, torch.stack(x0).numpy(), rtol=1e-6)
    assert a.x0_pred.attrs['long_name'] == VARIABLES['x0_pred'][0]
    assert a.channel.values.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(a.latent_y.values, (np.arange(6) + .5) / 6)
    np.testing.assert_allclose(a.latent_x.values, (np.arange(8) + .5) / 8)
    assert a.my_metric.attrs['long_name'] == 'my metric (logged value)'
    assert 'units' not in a.my_metric.attrs
    assert describe('gradsam_applied')['flag_meanings'] == FLAGS['gradsam_applied'][1]

def test_attrs_round_trip_provenance(recorded):
    a = plain(recorded)
    assert a.attrs['method'] == 'winwinlay'
    assert json.loads(a.attrs['params'])['before_step']['piece'] == 'Guidance'
    assert json.loads(a.attrs['layout'])['objects'][0]['phrase'] == 'red circle'

@pytest.mark.parametrize('ext', ['nc', 'zarr'])
def test_empty_values_record(tmp_path, ext):
    "A value with an empty dimension (a layout without objects) records and reads back."
    p = tmp_path/f'e.{ext}'
    r = Recorder(p, layers=None)
    r.begin([], ['<s>', 'a</w>', '</s>'] + ['</s>'] * 74, 3, (8, 8), dict(prompt='a'))
    for i in range(2): r.step(900 - i, per_object=(('object',), torch.zeros(0)), energy=float(i))
    rec = r.finish()
    assert rec.per_object.shape == (2, 0) and rec.energy.values.tolist() == [0., 1.]

def test_schema_1_recordings_still_open(tmp_path):
    "A recording written before schema 2 (no checksums, step/timestep in every group) opens as before."
    p = tmp_path/'old.nc'
    root = xr.Dataset({'energy': ('step', [3., 2., 1.]), 'timestep': ('step', [900., 800., 700.])}, coords={'step': [0, 1, 2]},
                      attrs={'layoutlab_version': '0.1.0', 'prompt': 'a'})
    att = xr.Dataset({'attention': (('step', 'layer', 'token', 'y', 'x'), np.full((2, 1, 3, 2, 2), .25, 'f4')),
                      'token_text': ('token', ['<s>', 'a</w>', '</s>']), 'timestep': ('step', [900., 800.])},
                     coords={'step': [0, 1], 'layer': ['mid'], 'token': [0, 1, 2]})   # killed between two writes: one step fewer
    root.to_netcdf(p, engine='h5netcdf'); att.to_netcdf(p, engine='h5netcdf', group='attention_2x2', mode='a')
    rec = load_recording(p)
    assert rec.sizes['step'] == 2 and rec['attention_2x2'].attention.sizes['step'] == 2
    assert 'timestep' in rec.coords and 'token_text' in rec['attention_2x2'].coords
