"The mutation check of the Theorem 4.1 report (`tests/mutate_theory.py`) aims at the module that exists: each mutation's text is found in it once at least."
import importlib.util
from pathlib import Path

ROOT = Path(__file__).parents[1]

def load_script():
    spec = importlib.util.spec_from_file_location('mutate_theory', ROOT / 'tests' / 'mutate_theory.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def test_target_is_the_theory_module():
    import layoutlab.studies.theory as theory
    m = load_script()
    assert (ROOT / m.TARGET).resolve() == Path(theory.__file__).resolve()

def test_every_mutation_changes_the_module():
    m = load_script()
    src = (ROOT / m.TARGET).read_text()
    for name, (what, old, new, nth) in m.MUTATIONS.items():
        assert m.mutate(src, old, new, nth) != src, name
