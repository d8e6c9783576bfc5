"Repository checks: exported modules match the notebooks, notebooks are clean, README matches the index notebook."
import shutil, subprocess, filecmp
from pathlib import Path
from layoutlab.ui.cli import readme_text

ROOT = Path(__file__).resolve().parents[1]

def _copy_project(tmp):
    for p in ('nbs', 'layoutlab'): shutil.copytree(ROOT/p, tmp/p, ignore=shutil.ignore_patterns('__pycache__', 'assets', '*.nc', '*.zarr'))
    shutil.copy(ROOT/'settings.ini', tmp/'settings.ini')
    return tmp

def test_modules_match_notebooks(tmp_path):
    _copy_project(tmp_path)
    subprocess.run(['nbdev_export'], cwd=tmp_path, check=True, capture_output=True)
    mods = lambda root: {str(p.relative_to(root)) for p in (root/'layoutlab').rglob('*.py')}
    stale = [m for m in sorted(mods(ROOT)) if not (tmp_path/m).exists() or not filecmp.cmp(ROOT/m, tmp_path/m, shallow=False)]
    new = sorted(mods(tmp_path) - mods(ROOT))
    assert not stale and not new, f"run nbdev_export: modules out of sync with notebooks: {stale + new}"

def test_notebooks_clean(tmp_path):
    _copy_project(tmp_path)
    subprocess.run(['nbdev_clean'], cwd=tmp_path, check=True, capture_output=True)
    dirty = [p.name for p in (ROOT/'nbs').glob('*.ipynb') if p.read_bytes() != (tmp_path/'nbs'/p.name).read_bytes()]
    assert not dirty, f"run nbdev_clean: notebooks not clean: {dirty}"

def test_readme_matches_index():
    assert (ROOT/'README.md').read_text() == readme_text(ROOT/'nbs'/'index.ipynb'), "run `layoutlab readme` to regenerate README.md"

def test_top_level_is_what_the_user_asked_for():
    tracked = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked: return  # not a git checkout (e.g. an sdist): nothing to check
    top = {p.split('/')[0] for p in tracked}
    assert top <= {'nbs', 'layoutlab', 'tests', 'settings.ini', 'setup.py', 'README.md', '.ci', '.github', 'LICENSE', '.gitignore'}, top

def test_ci_and_workflows_run_the_readme_commands():
    "`.ci/run` and the GitHub workflows call the README's install and test commands, not commands of their own."
    import yaml
    readme = (ROOT/'README.md').read_text()
    install, test = [l for l in readme.split('```sh\n', 1)[1].split('```', 1)[0].splitlines() if l.strip()][:2]
    ci = (ROOT/'.ci'/'run').read_text()
    assert install in ci and test in ci, "README's install and test commands must be .ci/run's"
    assert 'total' in ci or 'in all' in ci                                             # CI prints its total time
    steps = lambda f: [s.get('run', '') for j in yaml.safe_load((ROOT/'.github'/'workflows'/f).read_text())['jobs'].values()
                       for s in j.get('steps', [])]
    assert 'bash .ci/run' in steps('test.yml')
    docs = steps('docs.yml')
    assert install in docs and any('build_docs' in s for s in docs) and 'build_docs' in readme
