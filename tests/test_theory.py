"Theorem 4.1 and Corollary 4.2 of WinWinLay: property tests beyond the notebook's."
import numpy as np
import pytest
import torch
from hypothesis import given, settings, assume, strategies as st
from layoutlab.studies.theory import softmax, mask_grad, check_theorem41, ratio_growth, nash_weights, corollary42_check

@given(st.lists(st.floats(-6, 6), min_size=3, max_size=64), st.data(), st.floats(1e-3, 100.))
@settings(max_examples=500, deadline=None, database=None)
def test_theorem41_one_step(vals, data, lr):
    n = len(vals)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    assume(mask.sum() >= 2 and not mask.all())
    r = check_theorem41(np.array(vals), mask, lr)
    assume(r['judged'] > 0)
    assert r['order_kept'] and r['min_gain'] > 0
    assert r['min_rel_gain'] > 0.99               # the growth is the closed form β(1-qᵀm)(q_j-q_k)

@given(st.integers(0, 10_000), st.integers(4, 40), st.floats(0.05, 5.))
@settings(max_examples=50, deadline=None, database=None)
def test_ratio_monotone_under_f_and_aef(seed, n, lr):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=n) * 2
    mask = np.zeros(n); mask[: max(2, n // 2)] = 1
    for obj in ('f', 'aef'):
        r = ratio_growth(v, mask, lr=lr, steps=30, objective=obj)
        assert (np.diff(np.log(r['ratio'])) >= -1e-12).all()

def test_mask_grad_matches_autograd():
    v = np.random.default_rng(0).normal(size=10); m = (np.arange(10) % 3 == 0).astype(float)
    x = torch.tensor(v, requires_grad=True)
    g, = torch.autograd.grad((x.softmax(0) * torch.tensor(m)).sum(), [x])
    np.testing.assert_allclose(mask_grad(v, m), g.numpy(), atol=1e-14)

def test_whole_mask_no_growth():
    r = ratio_growth(np.array([3., 1., 0., -1.]), np.ones(4), lr=5., steps=20)
    np.testing.assert_allclose(r['ratio'], r['ratio'][0])

def test_naef_ratio_goes_to_prior_ratio():
    v = np.array([0., 2., -1., 0.5, 1., -2.]); mask = np.array([0, 1, 1, 1, 0, 0])
    tau = np.array([0, .5, .25, .25, 0, 0])
    r = ratio_growth(v, mask, lr=1., steps=2000, objective='naef', rho=5., tau=tau)
    qh = r['q'][-1] * mask / (r['q'][-1] * mask).sum()
    np.testing.assert_allclose(qh[1:4], tau[1:4], atol=0.02)
    with pytest.raises(ValueError): ratio_growth(v, mask, objective='other')

@given(st.integers(0, 10_000), st.integers(2, 200), st.floats(-0.98, 0.999), st.floats(-3, 3), st.floats(-3, 3))
@settings(max_examples=200, deadline=None, database=None)
def test_corollary42_any_angle(seed, d, cos, l1, l2):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d); u /= np.linalg.norm(u)
    w = rng.normal(size=d); w -= (w @ u) * u
    assume(np.linalg.norm(w) > 1e-6); w /= np.linalg.norm(w)
    g1 = u * 10**l1; g2 = (cos * u + np.sqrt(1 - cos**2) * w) * 10**l2
    a = nash_weights(g1, g2)
    n1, n2 = np.linalg.norm(g1), np.linalg.norm(g2)
    assert a[0] / a[1] == pytest.approx(n2 / n1, rel=1e-6)
    assert a[0] * n1 == pytest.approx(1 / np.sqrt(1 + cos), rel=1e-6)

def test_nash_opposite_and_three():
    with pytest.raises(ValueError): nash_weights(np.array([1., 2.]), np.array([-2., -4.]))
    rng = np.random.default_rng(0)
    G = [rng.normal(size=10) * s for s in (1., 10., .1)]
    a = nash_weights(*G)
    M = np.stack(G, 1).T @ np.stack(G, 1)
    np.testing.assert_allclose(a * (M @ a), 1., atol=1e-9)

def test_nash_direction_is_langevin_target():
    from layoutlab.guidance.update import langevin_step
    g = torch.Generator().manual_seed(0)
    z, eps, gE = (torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64) for _ in range(3))
    abar = 0.2
    score = (-eps / np.sqrt(1 - abar)).flatten().numpy()
    a = nash_weights(score, -gE.flatten().numpy())
    _, info = langevin_step(z, eps, gE, abar, noise=torch.zeros_like(z))
    assert a[1] / a[0] == pytest.approx(info['nu'].item(), rel=1e-7)

def test_corollary_check_small():
    chk = corollary42_check(n_pairs=20, d=8, seed=1)
    assert chk['rel_err'].max() < 1e-6 and len(chk['cos']) == 20


# Theorem 4.1 read from recordings: the measurement must be able to fail, and it must read what the CLI writes.
import json, subprocess
import xarray as xr
from layoutlab.studies.theory import theorem41_report, synthetic_recording, pair_gains, inbox_state
from layoutlab.core.record import load_recording

@pytest.mark.parametrize('seed', [0, 1, 2])
def test_report_tells_bias_from_none(seed):
    b, e = theorem41_report(synthetic_recording(True, seed=seed)), theorem41_report(synthetic_recording(False, seed=seed))
    assert float(b.gain_corr.mean()) > 0.99 and float(b.gain_positive.mean()) == 1.0 and float(b.order_kept.mean()) == 1.0
    assert abs(float(e.gain_corr.mean())) < 0.3 and 0.25 < float(e.gain_positive.mean()) < 0.75
    assert float(b.coverage.isel(step=-1, iteration=-1).mean()) < float(b.coverage.isel(step=0, iteration=0).mean())

def test_pair_gains_of_a_swap():
    box = np.ones((2, 2), bool)
    a0, a1 = np.array([[.4, .3], [.2, .1]]), np.array([[.1, .2], [.3, .4]])        # every order reversed
    g = pair_gains(a0, a1, box)
    assert g['n_pairs'] == 6 and g['order_kept'] == 0.0 and g['gain_positive'] == 0.0
    assert np.isnan(inbox_state(np.zeros((2, 2)), box)['coverage'])             # no mass in the box: undefined, not 0

@pytest.mark.parametrize('fmt', ['nc', 'zarr'])
def test_report_reads_generated_recordings(tmp_path, fmt):
    lay = {"prompt": "a red circle and a blue square", "seed": 0,
           "objects": [{"phrase": "red circle", "box": [.1, .1, .5, .5]}, {"phrase": "blue square", "box": [.5, .5, .9, .9]}]}
    (tmp_path/'l.json').write_text(json.dumps(lay))
    r = subprocess.run(['layoutlab', 'generate', str(tmp_path/'l.json'), '--model', 'tiny-sd15', '--method', 'aef_backprop',
                        '--steps', '4', '--format', fmt, '--out', str(tmp_path/'o')], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rec = load_recording(tmp_path/'o'/f'recording.{fmt}')
    rep = theorem41_report(rec)
    assert rep.order_kept.notnull().any() and rep.across_coverage.notnull().any()
    assert rep.order_kept.dims == ('step', 'transition', 'object') and list(rep.object.values) == ['red circle', 'blue square']

def test_report_refuses_unguided(tmp_path):
    plain = synthetic_recording()
    plain = xr.DataTree.from_dict({'/': plain.to_dataset().drop_vars('guidance_attention'), 'attention_8x8': plain['attention_8x8'].to_dataset()})
    with pytest.raises(ValueError, match='holds no guidance'): theorem41_report(plain)

def test_study_records_float32(monkeypatch):
    "The 15a study's recordings keep attention in float32: float16 moves the in-box statistics it reports."
    import layoutlab.studies.theorem41 as study
    seen = []
    class Stop(Exception): pass
    def fake_sample(pipe, layout, method='none', recorder=None, **kw): seen.append((method, recorder)); raise Stop
    monkeypatch.setattr(study, 'sample', fake_sample)
    monkeypatch.setattr(study, 'guidance_layers', lambda unet: ['mid_block.attentions.0.transformer_blocks.0.attn2'])
    with pytest.raises(Stop): study.theorem41_runs(type("Pipe", (), {"unet": None})(), None)
    assert seen and seen[0][1] is not None and seen[0][1].float16 is False

def _fake_runs(monkeypatch, calibration):
    "theorem41_runs with sample faked: the keyword arguments each condition's run got."
    import layoutlab.studies.theorem41 as study
    seen = {}
    class Res: recording, image = None, None
    def fake_sample(pipe, layout, method='none', **kw): seen[method if method != 'none' or 'before_step' not in kw else 'kick'] = kw; return Res()
    monkeypatch.setattr(study, 'sample', fake_sample)
    monkeypatch.setattr(study, 'guidance_layers', lambda unet: [])
    monkeypatch.setattr(study, 'kick_norms', lambda rec: {})
    lay = type('Lay', (), {'seed': 0})()
    study.theorem41_runs(type('Pipe', (), {'unet': None})(), lay, calibration=calibration)
    return seen

def test_study_naef_backprop_at_its_calibrated_step(monkeypatch):
    "By default NAEF × backprop runs the preset, whose step is the shipped calibration's (0.03); 'published' puts back the 1.0 of the published rows."
    import layoutlab.studies.theorem41 as study
    from layoutlab.guidance.registry import shipped_calibration
    assert shipped_calibration('shapes')['calibration']['naef_backprop'] == {'Guidance': {'step_scale': 0.03}}
    seen = _fake_runs(monkeypatch, 'shipped')
    assert 'Guidance' not in seen['naef_backprop'] and 'Guidance' not in seen['aef_backprop']    # the presets' own values
    assert seen['winwinlay']['Guidance'] == {'score': 'cfg'}
    seen = _fake_runs(monkeypatch, 'published')
    assert seen['naef_backprop']['Guidance'] == seen['aef_backprop']['Guidance'] == {'step_scale': 1.0} == study.PUBLISHED['Guidance']
    assert seen['winwinlay']['Guidance'] == {'score': 'cfg'}
    seen = _fake_runs(monkeypatch, {'calibration': {'naef_backprop': {'Guidance': {'step_scale': 0.1}}}, 'report': {}, 'seed0': 0, 'n': 1})
    assert seen['naef_backprop']['Guidance'] == {'step_scale': 0.1}
    with pytest.raises(ValueError, match="must be 'shipped'"): _fake_runs(monkeypatch, None)

def test_study_refuses_to_mix_calibrations(tmp_path):
    "Rows made under the presets (the published ones) and rows made at the calibrated step never share a file."
    from layoutlab.studies.theorem41 import theorem41_study
    out = tmp_path / 'rows.jsonl'
    out.write_text(json.dumps(dict(regime='scene', layout=0, condition='none')) + '\n')   # an old row: no calibration named
    with pytest.raises(ValueError, match='another file'): theorem41_study(n=1, out=out)
    with pytest.raises(ValueError, match='cannot read calibration'): theorem41_study(n=1, out=tmp_path / 'new.jsonl', calibration=tmp_path / 'missing.json')
