"""The docs build (tools/build_docs.py, MkDocs + Material): every notebook gets a page named as Quarto names it,
links resolve, figures are real PNGs, signatures read well, and, in headless Chromium with the network blocked,
every equation (titles and sidebar included) is typeset by the local MathJax, search finds and opens the right
page, and the previous/next links and the on-page table of contents navigate."""
import importlib.util, json, os, re, shutil, subprocess, sys, tempfile
from concurrent.futures import ThreadPoolExecutor
from configparser import ConfigParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parent.parent
NBS, DOCS = ROOT/'nbs', ROOT/'_docs'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
IN_CI = os.environ.get('CI', '').lower() in ('1', 'true', 'yes')
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND']
# nbdev removes these cells from the docs (`#| hide`, exported source) or Quarto hides their output.
_HIDDEN = re.compile(r'^\s*#\|\s*(hide|export|exporti|default_exp)\b|^\s*#\|\s*(include|output)\s*:\s*false', re.M)

def _load_build_docs():
    spec = importlib.util.spec_from_file_location('build_docs', ROOT/'tools'/'build_docs.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

BD = _load_build_docs()

def _notebooks(): return BD.notebooks(NBS)
def _page(nb): return BD.page_name(nb)  # nbs/00_core.ipynb -> core.html

@pytest.fixture(scope='module')
def docs():
    "Build the real _docs/ once for this module (it is git-ignored); {notebook stem: parsed page or None}."
    nbs = _notebooks()  # snapshot: notebooks added while the tests run are not expected to have pages
    r = subprocess.run([sys.executable, 'tools/build_docs.py'], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f'docs build failed:\n{r.stdout}\n{r.stderr[-5000:]}'
    return {p.stem: BeautifulSoup((DOCS/_page(p)).read_text(encoding='utf-8'), 'html.parser')
            if (DOCS/_page(p)).exists() else None for p in nbs}

def _cells(nb_path): return json.loads(nb_path.read_text(encoding='utf-8'))['cells']
def _src(c): return ''.join(c['source']) if isinstance(c['source'], list) else c['source']

def _expected_pngs(nb_path):
    "PNG outputs of cells whose output the docs keep."
    return sum('image/png' in o.get('data', {}) for c in _cells(nb_path) if c['cell_type'] == 'code'
               and not _HIDDEN.search(_src(c)) for o in c.get('outputs', []))

def _has_math(nb_path):
    return any(c['cell_type'] == 'markdown' and re.search(r'\$[^$\s][^$]*\$|\$\$', _src(c)) for c in _cells(nb_path))

def _title(nb_path):
    "The page title nbdev takes from the notebook's first `# heading`."
    for c in _cells(nb_path):
        m = c['cell_type'] == 'markdown' and re.match(r'\s*#\s+(.+)', _src(c))
        if m: return m[1].strip()
    return ''

def _text(soup, skip=('script', 'style', 'pre', 'code', 'mjx-container', 'input', 'textarea')):
    "Visible text of a page (sidebar, header, TOC and footer included), without code and MathJax output."
    soup = BeautifulSoup(str(soup), 'html.parser')
    for t in soup.find_all(skip): t.decompose()
    return soup.get_text(' ')

def _pages(docs): return {k: s for k, s in docs.items() if s is not None}

# ---------------------------------------------------------------- config files (no build needed)
def test_quarto_config():
    "nbs/_quarto.yml is a relative symlink to the top-level _quarto.yml, which nbdev/Quarto can use."
    link = NBS/'_quarto.yml'
    assert link.is_symlink() and os.readlink(link) == '../_quarto.yml'
    cfg = yaml.safe_load(link.read_text())
    assert cfg['project']['type'] == 'website' and cfg['metadata-files'] == ['nbdev.yml', 'sidebar.yml']
    assert cfg['format']['html']['html-math-method'] == 'mathjax'

def test_sidebar_up_to_date():
    "nbs/sidebar.yml (Quarto's sidebar) lists every notebook, in the order `--sidebar` writes."
    with tempfile.TemporaryDirectory() as td:
        for p in BD.notebooks(NBS): (Path(td)/p.name).touch()
        BD.write_sidebar(Path(td))
        want = (Path(td)/'sidebar.yml').read_text()
    assert (NBS/'sidebar.yml').read_text() == want, 'run `python tools/build_docs.py --sidebar`'

def test_page_names_are_nbdevs():
    "Pages are named as nbdev names Quarto's output (its doc links and the README rely on it)."
    from nbdev.doclinks import _nbpath2html
    for p in _notebooks(): assert _page(p) == _nbpath2html(p).name, p
    assert [_page(NBS/n) for n in ('00_core.ipynb', '20_tasks.hypergrid.ipynb', 'index.ipynb')] == \
        ['core.html', 'tasks.hypergrid.html', 'index.html']

def test_md_translation():
    "Quarto markdown -> Python-Markdown: callouts, blank lines before lists/tables/$$, notebook and doc links."
    md = BD.mkdocs_md('::: {.callout-note}\nSee [x](05_estimators.ipynb#renyi) and [`Env`](https://h.io/b/core.html#env).\n'
                      ':::\ntext\n- a\n- b\n\nmore\n$$\nx\n$$\nafter\n| a | b |\n|---|---|\n', doc_root='https://h.io/b/')
    assert '<div class="admonition note" markdown>' in md and md.count('</div>') == 1
    assert '[x](estimators.md#renyi)' in md and '[`Env`](DOCLINK:core.md#env)' in md
    assert 'text\n\n- a\n- b' in md and 'more\n\n$$\nx\n$$\n\nafter' in md and 'after\n\n| a | b |' in md
    pages, dropped = BD.resolve_doclinks({'core.md': '### Env\n\n[`Env`](DOCLINK:core.md#env) [`_f`](DOCLINK:core.md#_f)'})
    assert pages['core.md'].endswith('[`Env`](core.md#env) `_f`') and dropped == [('core.md', 'core.md#_f')]

# ---------------------------------------------------------------- built pages (Python only)
def test_every_notebook_has_a_page(docs):
    missing = [k for k, soup in docs.items() if soup is None]
    assert not missing, f'no page for {missing}'
    assert (DOCS/'index.html').exists() and (DOCS/'mathjax'/'tex-svg-full.js').exists()
    assert (DOCS/'search'/'search_index.js').exists(), 'the offline search index (file:// search) is missing'

def test_no_remote_scripts_or_styles(docs):
    for name, soup in _pages(docs).items():
        loaded = soup.find_all('script') + [t for t in soup.find_all('link') if not {'canonical', 'alternate'} & set(t.get('rel', []))]
        remote = [t.get('src') or t.get('href') for t in loaded if re.match(r'(https?:)?//', t.get('src') or t.get('href') or '')]
        assert not remote, f'{name}: loads {remote}'

def _ids(soup): return {t['id'] for t in soup.find_all(id=True)} | {t['name'] for t in soup.find_all('a', attrs={'name': True})}

def test_internal_links_resolve(docs):
    "Every relative href/src points to a file in _docs/, and every #anchor to an id of its page."
    pages = {_page(NBS/f'{k}.ipynb'): s for k, s in _pages(docs).items()}
    ids, bad = {k: _ids(s) for k, s in pages.items()}, []
    for name, soup in pages.items():
        for t in soup.find_all(['a', 'img', 'link', 'script']):
            url = t.get('href') or t.get('src')
            if not url or re.match(r'[a-z][\w+.-]*:|//', url, re.I): continue  # absolute, data:, mailto: ...
            u = urlsplit(url)
            target = (DOCS/unquote(u.path)).resolve() if u.path else DOCS/name
            rel = target.relative_to(DOCS.resolve()).as_posix() if target.is_relative_to(DOCS.resolve()) else None
            if rel is None or not target.exists(): bad.append(f'{name}: {url} (no such file)')
            elif u.fragment and rel in ids and unquote(u.fragment) not in ids[rel]:
                bad.append(f'{name}: {url} (no such anchor)')
    assert not bad, '\n'.join(bad)

def test_readme_doc_links_resolve(docs):
    "The README's links into the site (nbdev's doc links, Quarto page names) hit a page and an anchor of this build."
    cfg = ConfigParser(); cfg.read(ROOT/'settings.ini')
    d = cfg['DEFAULT']
    root = f"https://{d['user']}.github.io/{d['repo']}/"  # doc_host + doc_baseurl, as settings.ini spells them
    links = re.findall(r'\]\(' + re.escape(root) + r'([^)#\s]+)(?:#([^)\s]+))?\)', (ROOT/'README.md').read_text())
    assert links, f'README.md has no links into the site ({root})'
    for page, frag in links:
        assert (DOCS/page).exists(), f'README links to {page}, which the build has not'
        if frag: assert frag in _ids(BeautifulSoup((DOCS/page).read_text(), 'html.parser')), f'{page}#{frag}'

def test_figures_are_pngs(docs):
    "Pages of notebooks with (shown) PNG outputs show them as PNG files beside the page."
    for stem, soup in _pages(docs).items():
        want = _expected_pngs(NBS/f'{stem}.ipynb')
        if not want: continue
        srcs = [t['src'] for t in soup.find_all('img', class_='cell-figure')]
        assert len(srcs) >= want, f'{stem}: {len(srcs)} figures, notebook has {want}'
        for src in srcs:
            png = (DOCS/unquote(src)).read_bytes()
            w, h = int.from_bytes(png[16:20], 'big'), int.from_bytes(png[20:24], 'big')
            assert png[:8] == b'\x89PNG\r\n\x1a\n' and w >= 16 and h >= 16, f'{stem}: bad PNG {src} ({w}x{h})'

def test_quarto_syntax_translated(docs):
    "No Quarto cell options, fenced-div markers or raw frontmatter leak into the pages."
    for name, soup in _pages(docs).items():
        code = ' '.join(t.get_text() for t in soup.find_all('pre'))
        assert not re.search(r'#\|\s*[\w-]+', code), f'{name} shows `#|` cell options'
        prose = _text(soup)
        assert ':::' not in prose and 'output-file:' not in prose and 'DOCLINK' not in str(soup), f'{name}: Quarto markup'

def test_signatures(docs):
    "show_doc of a class reads `class X(...)`, never `def X(*args, **kwargs)` (fastcore's text for object.__init__)."
    sigs = [t.get_text() for s in _pages(docs).values() for t in s.find_all('pre')]
    assert not [s for s in sigs if re.match(r'\s*def [A-Z]\w*\(\s*\*args', s)], 'a class shown as `def Name(*args, ...`'
    core = [s.strip() for s in map(lambda t: t.get_text(), docs['00_core'].find_all('pre'))]
    assert 'class Env' in core and any(s.startswith('class GraphEnv(\n    n_nodes:int') for s in core)

def test_prev_next_chain(docs):
    "Following `next` from the index visits every page once, in sidebar order; `previous` walks it back."
    order = [_page(NBS/n) for _, names in BD.sidebar_sections(NBS) for n in names if docs.get(Path(n).stem)]
    pages = {_page(NBS/f'{k}.ipynb'): s for k, s in _pages(docs).items()}
    link = lambda page, kind: (pages[page].select_one(f'a.md-footer__link--{kind}') or {}).get('href')
    seen = ['index.html']
    while (nxt := link(seen[-1], 'next')) and len(seen) <= len(order): seen.append(nxt)
    assert seen == order
    assert all(link(b, 'prev') == a for a, b in zip(order, order[1:])) and link(order[0], 'prev') is None

def test_toc(docs):
    "Every page with sections has an on-page table of contents listing its h2/h3 headings in order."
    for stem, soup in _pages(docs).items():
        heads = [h['id'] for h in soup.select('article h2[id], article h3[id]')]
        toc = soup.select_one('nav.md-nav--secondary')
        if not heads: continue
        assert toc, f'{stem}: no table of contents'
        assert [a['href'] for a in toc.select('a.md-nav__link')] == [f'#{h}' for h in heads], stem

# ---------------------------------------------------------------- rendered in a browser
def _need_chromium():
    if not CHROMIUM:
        if IN_CI: pytest.fail('chromium is required in CI (apt-get install -y chromium)')
        pytest.skip('chromium not installed (apt-get install -y chromium); CI=true makes this a failure')

def _chromium_dom(page, tmp):
    "The DOM after scripts ran, with all host names unresolvable (so nothing can come from the network)."
    cmd = [CHROMIUM, '--headless', *CHROMIUM_ARGS, f'--user-data-dir={tmp}/{page.stem}',
           '--virtual-time-budget=5000', '--dump-dom', page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout

@pytest.fixture(scope='module')
def rendered(docs):
    _need_chromium()
    stems = list(_pages(docs))
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=4) as ex:
        doms = list(ex.map(lambda s: _chromium_dom(DOCS/_page(NBS/f'{s}.ipynb'), tmp), stems))
    return {s: BeautifulSoup(d, 'html.parser') for s, d in zip(stems, doms)}

def test_math_rendered_offline(rendered):
    "Pages with math get MathJax output, no TeX errors and no TeX left in the text (sidebar, header, footer too)."
    for stem, dom in rendered.items():
        assert dom.find('article'), f'{stem} did not load in Chromium'
        if _has_math(NBS/f'{stem}.ipynb'): assert dom.find('mjx-container'), f'{stem}: equations not typeset'
        assert not dom.find(attrs={'data-mjx-error': True}), f'{stem}: MathJax error'
        left = re.findall(r'\$\$|\\\(|\\\[|\\begin\{|\$[^$\s][^$]*\\[a-zA-Z]+[^$]*\$|\$\w+_\w+\$', _text(dom.body))
        assert not left, f'{stem}: untypeset TeX {left[:5]}'

def test_math_in_titles(rendered):
    "A title with math is typeset in the page heading and in the sidebar of every page."
    with_math = {s: _page(NBS/f'{s}.ipynb') for s in rendered if '$' in _title(NBS/f'{s}.ipynb')}
    assert with_math or not rendered, 'no notebook title has math any more: pick another check'
    for stem, page in with_math.items():
        assert rendered[stem].select_one('article h1 mjx-container'), f'{stem}: title math not typeset'
        for other, dom in rendered.items():
            link = dom.select_one(f'nav.md-nav--primary a.md-nav__link[href="{page}"]')
            assert link and link.find('mjx-container'), f'{other}: sidebar entry of {page} not typeset'

def test_figures_in_browser(rendered):
    for stem, dom in rendered.items():
        if _expected_pngs(NBS/f'{stem}.ipynb'): assert dom.find('img', class_='cell-figure'), stem

@pytest.fixture(scope='module')
def browser(docs):
    "Playwright driving the system Chromium (no browser download), network blocked."
    _need_chromium()
    try: from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI: pytest.fail('playwright is required in CI (it is in dev_requirements)')
        pytest.skip('playwright not installed; CI=true makes this a failure')
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()

@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={'width': 1400, 'height': 900})
    pg = ctx.new_page()
    errors = []
    pg.on('pageerror', lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, f'JavaScript errors: {errors}'

def _open(pg, html):
    pg.goto((DOCS/html).as_uri())
    pg.wait_for_selector('article h1')

def _search(pg, query):
    "Type `query` into the search box as a reader would; the result links."
    pg.click('.md-search__input')
    pg.keyboard.type(query, delay=20)
    pg.wait_for_selector('.md-search-result__item a', timeout=20000)
    hrefs = pg.eval_on_selector_all('.md-search-result__item a', 'els => els.map(e => e.href)')
    return [h.rsplit('/', 1)[-1] for h in hrefs]  # Material makes them absolute: keep `page.html#anchor`

def test_search_opens_the_right_page(page):
    "Searching an API name from another page lists its show_doc entry; clicking it opens that page at the entry."
    _open(page, 'index.html')
    hrefs = _search(page, 'sample_trajectories')
    assert 'core.html#sample_trajectories' in hrefs, hrefs
    page.click('.md-search-result__item a[href$="/core.html#sample_trajectories"]')
    page.wait_for_url(re.compile(r'/core\.html#sample_trajectories$'))
    assert page.locator('[id="sample_trajectories"]').count() == 1

def test_search_finds_prose(page):
    "A word of a chapter's prose finds that chapter, and the result snippets are typeset."
    _open(page, 'core.html')
    hrefs = _search(page, 'Tsallis')
    assert any(h.startswith('divergences.html') for h in hrefs) and any(h.startswith('estimators.html') for h in hrefs), hrefs
    page.wait_for_timeout(1000)  # MathJax typesets the result list shortly after it changes
    assert '\\(' not in page.inner_text('.md-search-result')

def test_next_and_previous_links(page):
    _open(page, 'core.html')
    page.click('a.md-footer__link--next')
    page.wait_for_url(re.compile(r'/exact\.html$'))
    page.click('a.md-footer__link--prev')
    page.wait_for_url(re.compile(r'/core\.html$'))

def test_toc_navigates(page):
    "Clicking an entry of the on-page table of contents scrolls its section to the top of the window."
    _open(page, 'core.html')
    toc = page.locator('.md-sidebar--secondary nav.md-nav--secondary a.md-nav__link[href="#policies"]')
    toc.click()
    page.wait_for_url(re.compile(r'#policies$'))
    top = page.evaluate('document.getElementById("policies").getBoundingClientRect().top')
    assert 0 <= top < 200, top
