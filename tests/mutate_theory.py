"""Mutation check of `theorem41_report`: break `layoutlab/studies/theory.py` in a temporary copy of the package, one way at a
time, run `tests/test_theory_mutations.py` against the copy, and print whether the tests failed (they must).

    python tests/mutate_theory.py            # exit status 1 if the unmutated copy fails or a mutation survives
"""
import shutil, subprocess, sys, tempfile, os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / 'tests' / 'test_theory_mutations.py'
TARGET = Path('layoutlab') / 'studies' / 'theory.py'  # the module mutated, relative to the package root

# name -> (what it breaks, exact text in theory.py, its replacement, the occurrence replaced: 1 = first)
MUTATIONS = {
    'a_no_one_minus_inside': ("(a) drop the (1 − inside) factor of the prediction",
        "pred = (1 - inside) * (q0[j] - q0[k])", "pred = (q0[j] - q0[k])", 1),
    'b_transpose_masks': ("(b) transpose x and y of the box masks",
        "def _box_masks(lay, h, w): return lay.masks(h, w).cpu().numpy() > 0.5",
        "def _box_masks(lay, h, w): return lay.masks(h, w).cpu().numpy().transpose(0, 2, 1) > 0.5", 1),
    'b_transpose_between_steps': ("(b) transpose x and y of the later map of every transition",
        "a0, a1 = maps[(*l, t, o)], maps[(*l, t + 1, o)]", "a0, a1 = maps[(*l, t, o)], maps[(*l, t + 1, o)].T", 1),
    'b_transpose_across_maps': ("(b) transpose x and y of the across-step phrase maps",
        "v = np.asarray(avg.transpose('step', 'object', 'y', 'x').values, np.float64)",
        "v = np.asarray(avg.transpose('step', 'object', 'x', 'y').values, np.float64)", 1),
    'c_masks_reversed_inner': ("(c) mix up objects: reverse the masks' object order for the inner iterations",
        "m = _box_masks(lay, *v.shape[-2:])", "m = _box_masks(lay, *v.shape[-2:])[::-1]", 1),
    'c_maps_reversed_across': ("(c) mix up objects: reverse the object order of the phrase maps (across steps)",
        "for o in lay.objects], 'object')", "for o in lay.objects[::-1]], 'object')", 1),
    'c_labels_reversed': ("(c) mix up objects: reverse the report's object labels",
        "ds = xr.Dataset(coords=dict(step=rec['step'].values, object=[o.phrase for o in lay.objects]),",
        "ds = xr.Dataset(coords=dict(step=rec['step'].values, object=[o.phrase for o in lay.objects][::-1]),", 1),
    'd_coverage_not_per_cell': ("(d) coverage = exp(entropy), not divided by the box's cells",
        "coverage=float(np.exp(h) / len(q))", "coverage=float(np.exp(h))", 1),
    'd_coverage_whole_map': ("(d) coverage from the entropy of the whole map instead of the in-box part",
        "h = float(-(q * np.log(np.clip(q, 1e-300, None))).sum())",
        "h = float(-((a / a.sum()) * np.log(np.clip(a / a.sum(), 1e-300, None))).sum())", 1),
    'd_coverage_all_cells': ("(d) coverage divided by every cell of the map instead of the box's",
        "coverage=float(np.exp(h) / len(q))", "coverage=float(np.exp(h) / len(a))", 1),
}

def mutate(src:str, old:str, new:str, nth:int)->str:
    "Replace the nth occurrence of old; refuse when it is not there (the mutation would test nothing)."
    at = -1
    for _ in range(nth):
        at = src.find(old, at + 1)
        if at < 0: raise SystemExit(f"mutation text not found in theory.py (has the code changed?): {old!r}")
    return src[:at] + new + src[at + len(old):]

def run_tests(pkg_root:Path)->subprocess.CompletedProcess:
    env = {**os.environ, 'PYTHONPATH': str(pkg_root), 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}
    return subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', str(TESTS)],
                          cwd=pkg_root, env=env, capture_output=True, text=True)

def imported_from(pkg_root:Path)->str:
    "Where the tests' `layoutlab.studies.theory` comes from under this PYTHONPATH (must be the copy)."
    env = {**os.environ, 'PYTHONPATH': str(pkg_root)}
    return subprocess.run([sys.executable, '-c', 'import layoutlab.studies.theory as t; print(t.__file__)'], cwd=pkg_root, env=env,
                          capture_output=True, text=True, check=True).stdout.strip()

def main()->int:
    src = (ROOT / TARGET).read_text()
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / 'layoutlab'
        shutil.copytree(ROOT / 'layoutlab', pkg, ignore=shutil.ignore_patterns('__pycache__'))
        where = imported_from(Path(tmp))
        if not where.startswith(str(pkg)): raise SystemExit(f"the tests would import {where}, not the copy in {pkg}")
        r = run_tests(Path(tmp))
        print(f"{'unmutated':28s} tests {'pass' if r.returncode == 0 else 'FAIL'}", flush=True)
        if r.returncode != 0: print(r.stdout[-3000:]); return 1
        for name, (what, old, new, nth) in MUTATIONS.items():
            (Path(tmp) / TARGET).write_text(mutate(src, old, new, nth))
            r = run_tests(Path(tmp))
            failed = [l.split(' - ')[0].split('::')[-1] for l in r.stdout.splitlines() if l.startswith(('FAILED', 'ERROR'))]
            print(f"{name:28s} {'caught' if r.returncode != 0 else 'SURVIVED'}: {what}; failing: {', '.join(failed) or '-'}", flush=True)
            bad += r.returncode == 0
        (Path(tmp) / TARGET).write_text(src)
    print(f"{len(MUTATIONS) - bad} of {len(MUTATIONS)} mutations caught")
    return int(bad > 0)

if __name__ == '__main__': sys.exit(main())
