"The leaderboard's one command: what it prints reruns the committed files (resuming, not recomputing), and its files hold every method."
import json, shlex
from pathlib import Path
from typer.testing import CliRunner
from layoutlab.ui.cli import app
from layoutlab.studies.leaderboard import REGIMES, SUBSET, leaderboard_methods, leaderboard_files, leaderboard_rows

IMAGES = Path(__file__).parents[1]/'nbs'/'images'

def printed_commands():
    r = CliRunner().invoke(app, ['study-leaderboard', '--out', str(IMAGES)])
    assert r.exit_code == 0, r.output
    assert 'CPU-min' in r.output
    return [shlex.split(l) for l in r.output.splitlines() if l.startswith('layoutlab ')]

def opt(argv, name): return argv[argv.index(name) + 1]

def test_printed_commands_are_the_committed_runs():
    cmds = printed_commands()
    assert len(cmds) == len(REGIMES) * (1 + len(SUBSET))
    for argv in cmds:
        assert argv[1] == 'bench'
        res = json.loads(Path(opt(argv, '--out')).read_text())       # the committed result of this very command
        cfg = res['config']
        assert cfg['regime'] == opt(argv, '--regime') and cfg['steps'] == int(opt(argv, '--steps'))
        assert cfg['methods'] == opt(argv, '--methods').split(',')    # same list, same order: a rerun resumes from its .jsonl
        assert len({r['layout'] for r in res['rows']}) == int(opt(argv, '--n'))

def test_every_method_in_every_regime():
    for regime in REGIMES:
        rows = leaderboard_rows(IMAGES, regime)
        n = {m: len({r['layout'] for r in rows if r['method'] == m}) for m in ['none', *leaderboard_methods()]}
        assert all(n[m] == SUBSET.get(m, 100) for m in n), (regime, n)
        assert leaderboard_files(IMAGES, regime)[0].name == f'leaderboard_{regime}_shapes.json'
