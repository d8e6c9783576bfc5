"""The golden runs: every method preset on three shipped layouts, on the bundled ShapesSD model (CPU, float32).

Shared by `make_golden.py` (records a fixture) and `tests/test_golden.py` (re-runs and compares).
The fixtures were recorded from the code before the package's module layout changed (commit af758b4): when modules
move, update `_api()` only. One fixture per CPU capability (torch's `get_cpu_capability()`): the vector kernels torch
picks for a CPU (AVX2, AVX512) round float32 sums differently, and eight steps of guidance carry a last-bit difference
into the images (measured on an AVX2 machine against the AVX512 fixture: up to 1/255 on a few pixels for most presets,
2/255 for SALI, 43/255 for Grad-SAM, whose thresholded mask flips a cell). Bit for bit holds only on the same kind of CPU.
"""
import contextlib, platform
from pathlib import Path
from types import SimpleNamespace
import numpy as np

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / 'presets.npz'   # the first fixture, recorded on an AVX512 CPU
FIXTURES = {'AVX512': FIXTURE, 'AVX2': HERE / 'presets_AVX2.npz'}   # torch's CPU capability -> its fixture
LAYOUT_DIR = HERE.parents[1] / 'layoutlab' / 'assets' / 'layouts'

# the methods of `method_names()` when the fixture was recorded (the test checks the package still has them)
METHODS = ['none', 'layout_control', 'winwinlay', 'aef_backprop', 'naef_backprop', 'aef_adaptive', 'naef_adaptive',
           'ilgd', 'sali', 'gradsam']
SEEDS = {'one-shape': 11, 'two-shapes': 22, 'three-shapes': 33}   # layout (file stem) -> the run's seed
LAYOUTS = list(SEEDS)
STEPS = 8
SCALAR_DIMS = {'step', 'iteration', 'object'}   # a variable is kept when its dims are a subset of these (no spatial dim)
THREADS = 1   # float32 results change in the last bits with torch's thread count (1 vs 2); one thread is also the
              # fastest on a busy 2-core machine (2 threads spin-wait for each other there)


def _api():
    "The package's sampling API, imported here and nowhere else in the golden test (update this when modules move)."
    from layoutlab import sample, load_pipeline, Recorder, load_layout
    from layoutlab.guidance.registry import method_names, preset, get_method
    return SimpleNamespace(sample=sample, load_pipeline=load_pipeline, Recorder=Recorder, load_layout=load_layout,
                           method_names=method_names, preset=preset, get_method=get_method)


# What ShapesSD's presets ran with when the fixtures were recorded (the package's per-model defaults then, one value per
# piece for every method). Since the shipped calibration sets per-method values (layoutlab/assets/calibration/), the
# presets' defaults differ from these; the golden runs pin them, so the test checks the code's arithmetic, not the defaults.
RECORDED_VALUES = {'Guidance': {'step_scale': 1.0, 'r': 0.25}, 'LossGuidance': {'eta': 1.8}}


def pinned_values(pipe, method:str)->dict:
    "Per piece of the method's preset, the recorded values of the parameters it has: overrides for `sample`."
    out = {}
    for d in _api().preset(method, pipe)[1].values():
        vals = {k: v for k, v in RECORDED_VALUES.get(d.get('piece'), {}).items() if k in d}
        if vals: out.setdefault(d['piece'], {}).update(vals)
    return out


def load_pipe():
    "The bundled ShapesSD pipeline on the CPU, float32."
    import torch
    return _api().load_pipeline('shapes', device='cpu', dtype=torch.float32)


@contextlib.contextmanager
def pinned_threads(n=THREADS):
    "torch's intra-op thread count set to `n` for the block, then restored."
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try: yield
    finally: torch.set_num_threads(old)


def environment()->dict:
    "What the bits of a float32 CPU run can depend on, stored with the fixture as '_meta/...' (strings, no pickle)."
    import torch
    return {'torch': torch.__version__, 'numpy': np.__version__, 'machine': platform.machine(),
            'cpu_capability': torch.backends.cpu.get_cpu_capability(), 'threads': str(THREADS)}


def scalar_variables(rec)->dict:
    "Every data variable of a recording (any group) whose dims are a subset of step/iteration/object, as numpy arrays."
    out = {}
    for node in rec.subtree:
        prefix = node.path.strip('/')
        for name, v in node.data_vars.items():
            if set(v.dims) <= SCALAR_DIMS:
                out[f'{prefix}/{name}' if prefix else name] = np.asarray(v.values)
    return out


def run_one(pipe, method:str, layout:str)->dict:
    "One golden run: {'image': uint8 (h, w, 3), variable: recorded values, ...}."
    api = _api()
    lay = api.load_layout(LAYOUT_DIR / f'{layout}.json')
    s = api.sample(pipe, lay, method, steps=STEPS, seed=SEEDS[layout], recorder=api.Recorder(), progress=False, **pinned_values(pipe, method))
    out = scalar_variables(s.recording)
    assert 'image' not in out, "a recorded variable is named 'image'"
    out['image'] = np.asarray(s.image.convert('RGB'), dtype=np.uint8)
    return out


def run_method(pipe, method:str)->dict:
    "The golden runs of one method: {'{method}/{layout}/{variable}': array}."
    with pinned_threads():
        return {f'{method}/{layout}/{k}': v for layout in LAYOUTS for k, v in run_one(pipe, method, layout).items()}


def fixture_for(capability:str):
    "The fixture recorded on a CPU of this capability, or None when there is none."
    path = FIXTURES.get(capability)
    return path if path is not None and path.exists() else None


def load_fixture(path=FIXTURE)->dict:
    "The recorded fixture, without pickle."
    with np.load(path, allow_pickle=False) as f: return {k: f[k] for k in f.files}


def compare(expected:dict, got:dict)->list:
    "Readable differences between two golden dicts (empty: identical; images and values bit for bit, NaN equal to NaN)."
    problems = []
    for k in sorted(set(expected) - set(got)): problems.append(f'{k}: in the fixture, not recorded now')
    for k in sorted(set(got) - set(expected)): problems.append(f'{k}: recorded now, not in the fixture')
    for k in sorted(set(expected) & set(got)):
        e, g = expected[k], got[k]
        if e.dtype != g.dtype or e.shape != g.shape:
            problems.append(f'{k}: dtype/shape {e.dtype}{list(e.shape)} in the fixture, {g.dtype}{list(g.shape)} now'); continue
        same = np.array_equal(e, g, equal_nan=e.dtype.kind in 'fc')
        if same: continue
        bad = ~((e == g) | (np.isnan(e) & np.isnan(g))) if e.dtype.kind in 'fc' else e != g
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        diff = np.abs(e.astype(np.float64) - g.astype(np.float64))
        problems.append(f'{k}: {int(bad.sum())} of {e.size} values differ; first at {idx}: fixture {e[idx].item()!r}, now {g[idx].item()!r}; '
                        f'max |diff| {np.nanmax(np.where(bad, diff, np.nan)):.3g}')
    return problems
