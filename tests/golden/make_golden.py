"""Record the golden fixture `tests/golden/presets.npz`: run `python tests/golden/make_golden.py`.

Only re-record on purpose (a change of results that is meant); the point of the fixture is that refactors keep it.
"""
import sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from golden_runs import FIXTURE, METHODS, LAYOUTS, _api, load_pipe, run_method, environment


def main(path=FIXTURE):
    names = list(_api().method_names())
    if names != METHODS: sys.exit(f"method_names() is {names}, golden_runs.METHODS is {METHODS}: update METHODS first")
    pipe = load_pipe()
    data, t0 = {}, time.time()
    for m in METHODS:
        t = time.time()
        data.update(run_method(pipe, m))
        print(f'{m:15s} {time.time() - t:6.1f} s  ({len(LAYOUTS)} layouts)', flush=True)
    data.update({f'_meta/{k}': np.array(v) for k, v in environment().items()})
    np.savez_compressed(path, **data)
    print(f'{len(data)} arrays, {Path(path).stat().st_size / 1024:.0f} KiB -> {path} in {time.time() - t0:.0f} s')


if __name__ == '__main__': main(*sys.argv[1:])
