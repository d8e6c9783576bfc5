"The offline docs build: a page per notebook, API docs rendered by show_doc, figures embedded."
import re
from pathlib import Path
import pytest
from layoutlab.docs import build_docs, doc_notebooks, page_name, api_docs

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "Every notebook built; 13_plots executed (its figures), the others from their saved outputs."
    out = tmp_path_factory.mktemp('docs')
    pages = build_docs(NBS, out, execute=['13_plots'])
    return out, pages

def _exported(nb:Path)->bool: return '#| default_exp' in nb.read_text()

def test_a_page_per_notebook(site):
    out, pages = site
    assert sorted(p.name for p in pages) == sorted(page_name(nb) for nb in doc_notebooks(NBS))
    assert (out/'index.html').exists()
    for p in pages:
        s = p.read_text()
        assert '<nav class="ll-nav">' in s and 'href="index.html"' in s and '<title>' in s

def test_api_docs_rendered(site):
    out, _ = site
    for nb in doc_notebooks(NBS):
        if _exported(nb): assert api_docs((out/page_name(nb)).read_text()), f"{nb.name}: no API docs on its page"
    plots = api_docs((out/'plots.html').read_text())
    assert {'show_layout', 'attention_over_image', 'curves', 'gradsam_panel', 'compare'} <= set(plots)
    assert {'LayoutEditor', 'RecordingBrowser'} <= set(api_docs((out/'widgets.html').read_text()))
    page = (out/'plots.html').read_text()
    assert '# the run&#39;s image (PIL or array); None draws the map alone' in page or "# the run's image" in page   # a docment, rendered
    assert not re.search(r'#\|\s*(export|hide|default_exp)', page)                                              # directives gone

def test_figures_embedded(site):
    out, _ = site
    plots = (out/'plots.html').read_text()
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', plots)) >= 8     # executed: its figures are in the page
    widgets = (out/'widgets.html').read_text()
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', widgets)) >= 2   # the browser test's screenshots, embedded
    assert 'run the notebook in Jupyter' not in plots
