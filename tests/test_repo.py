"Repository checks: exported modules match the notebooks, notebooks are clean, README matches the index notebook."
import json, re, shutil, subprocess, filecmp
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
    nbs = sorted(p.relative_to(ROOT/'nbs') for p in (ROOT/'nbs').rglob('*.ipynb'))
    assert len(nbs) > 30 and any(len(p.parts) > 1 for p in nbs), nbs                  # the subfolders are searched
    dirty = [str(p) for p in nbs if (ROOT/'nbs'/p).read_bytes() != (tmp_path/'nbs'/p).read_bytes()]
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

def _module(nb:Path)->str|None:
    "The module a notebook exports (its `#| default_exp`), or None for a guide."
    m = re.search(r'#\|\s*default_exp\s+([\w.]+)', nb.read_text())
    return m.group(1) if m else None

def misplaced(nbs:Path # the notebooks folder
             )->list: # `path (expected folder)` of each notebook outside the folder its module asks for
    "nbs/ mirrors layoutlab/: a notebook of `core.loop` is in nbs/core/, of a top-level module (`plots`, `__init__`) at the top; one exporting nothing is a guide (nbs/guides/), except the index (top)."
    out = []
    for p in sorted(nbs.rglob('*.ipynb')):
        rel = p.relative_to(nbs)
        if any(s.startswith(('.', '_')) for s in rel.parts): continue
        mod = _module(p)
        want = '/'.join(mod.split('.')[:-1]) if mod else ('' if p.name == 'index.ipynb' else 'guides')
        if rel.parent.as_posix().strip('.') != want: out.append(f"{rel.as_posix()} (belongs in nbs/{want})")
    return out

def test_notebooks_sit_in_their_modules_folder():
    assert misplaced(ROOT/'nbs') == []

def test_misplaced_notebooks_are_found(tmp_path):
    for f, exp in [('index.ipynb', None), ('core/04_sampler.ipynb', 'core.loop'), ('13_plots.ipynb', 'plots'),
                   ('guides/17_tutorial.ipynb', None), ('core/09_methods.ipynb', 'guidance.methods'), ('16_cli.ipynb', 'ui.cli'), ('core/99_notes.ipynb', None)]:
        (tmp_path/f).parent.mkdir(exist_ok=True)
        (tmp_path/f).write_text(json.dumps({'cells': [{'source': f'#| default_exp {exp}'}] if exp else []}))
    assert misplaced(tmp_path) == ['16_cli.ipynb (belongs in nbs/ui)', 'core/09_methods.ipynb (belongs in nbs/guidance)',
                                   'core/99_notes.ipynb (belongs in nbs/guides)']

def test_readme_links_resolve():
    "Every relative link or image of README.md (generated from nbs/index.ipynb) names a file of the repository."
    links = re.findall(r'\]\(([^)\s]+)\)', (ROOT/'README.md').read_text())
    rel = [l.split('#')[0] for l in links if not re.match(r'\w+:|#|/', l)]
    assert len(rel) > 10 and any('/guides/' in l for l in rel), rel
    assert [l for l in rel if not (ROOT/l).exists()] == []
