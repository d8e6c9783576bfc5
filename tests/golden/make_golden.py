"""Record the golden fixture of this machine's CPU capability (`golden_runs.FIXTURES`): `python tests/golden/make_golden.py [PATH]`.

Only re-record on purpose (a change of results that is meant); the point of the fixture is that refactors keep it.
A fixture for a new kind of CPU is recorded from the code before the refactor (`git worktree add /tmp/gold af758b4`,
then `PYTHONPATH=/tmp/gold python /tmp/gold/tests/golden/make_golden.py PATH` with PATH this folder's name for it).
"""
import sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from golden_runs import FIXTURES, METHODS, LAYOUTS, _api, load_pipe, run_method, environment


def main(path=None):
    path = path or FIXTURES.get(environment()['cpu_capability']) or sys.exit(f"no fixture name for a {environment()['cpu_capability']} CPU: add one to golden_runs.FIXTURES")
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
