"""wiki-car: a small TREC CAR-style retrieval set built from real English Wikipedia.

TREC Complex Answer Retrieval (Dietz et al., 2017, "TREC Complex Answer Retrieval Overview")
turns Wikipedia into a retrieval benchmark without human judges: the query is a heading path,
"Article / Section / Subsection", and the relevant passages are the paragraphs written under that
heading. wiki-car does the same with the ~106-page English Wikipedia sample that ships inside the
``gensim`` wheel (CC BY-SA), so it works offline and is built on first use in a few seconds.

What is kept and what is dropped, and why:

* Pages: only namespace 0; redirects and disambiguation pages are dropped (they are lists of
  links, not prose). About 98 real articles remain.
* Markup: the wikitext is parsed with ``mwparserfromhell`` and walked node by node. Links keep
  their display text, and their targets are recorded (hyperlink pretraining needs them).
  Templates, references, tables, galleries, math, images with their captions and categories are
  dropped: none of them is running prose, and their text (citation fields, table cells) would be
  "relevant" to no heading. A handful of inline templates that print words inside sentences
  (``convert``, ``lang``, ...) keep those words, so sentences do not lose their numbers.
* Sections are cut at heading *lines* before parsing, as MediaWiki does: unbalanced ``''``,
  ``<ref>`` or table markup would otherwise make the parser swallow the headings that follow it.
* Boilerplate sections (References, External links, See also, Notes, ...) and everything under
  them are dropped: they are lists of citations, not answers.
* Passages are ~100-word chunks of one section's own text, cut at sentence boundaries.
* Queries are the headings of sections and subsections with at least one passage of their own;
  the qrels are all passages of that section. Lead passages (before the first heading) are in the
  corpus but are never queries: TREC CAR's queries are headings, and the lead has none.
* Labels are sparse, truth is complete: ``positives`` holds ONE passage per query (like MS MARCO),
  ``qrels`` all of them, so the other passages of the section are known hidden positives.
* Splits are by article (~70% train, ~12% dev, ~18% test): a split by query would put almost
  every test query's article into training. Each split is searched over its own articles'
  passages only (``split_pids``): a CPU-speed choice that keeps every search small. A passage
  from the right article is easy to find; the task is finding the right section.
* Three qrels flavours, as TREC CAR defines them (its benchmarks ship ``*.hierarchical.qrels``,
  ``*.toplevel.qrels`` and ``*.article.qrels``): ``hierarchical`` (the default) — a passage is
  relevant to the exact heading it sits under; ``toplevel`` — to every heading inside its top-level
  section (parent, sub-sections and siblings under the same top-level heading count too);
  ``article`` — to every heading of its article. Deviation: TREC CAR's toplevel and article qrels
  judge only top-level headings (or pages) as queries; wiki-car keeps every heading as a query
  and its one labelled positive under every flavour, so the flavours differ only in what counts
  as relevant, and runs stay comparable. ``relation(data, qid, pid)`` names where a passage sits
  relative to a query's heading (the study notebook counts mined negatives with it).
"""
from __future__ import annotations

import bz2
import html
import importlib.util
import random
import re
import statistics
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mwparserfromhell
from mwparserfromhell.nodes import ExternalLink, HTMLEntity, Tag, Template, Text, Wikilink
from mwparserfromhell.wikicode import Wikicode

from retrlab.cache import cached_dir
from retrlab.data.dataset import SPLITS, RetrievalData

# Located without importing gensim (a slow import that wiki-car does not need).
DUMP = (Path(importlib.util.find_spec("gensim").origin).parent
        / "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
XML_NS = "{http://www.mediawiki.org/xml/export-0.10/}"
NAME = "wiki-car"
VERSION = "v1"  # bump when the build changes, so old caches are not reused
SPLIT_FRACTIONS = {"dev": 0.12, "test": 0.18}  # train gets the rest (~70%)
CHUNK_WORDS = 100  # a passage closes once it holds at least this many words
MIN_LAST_WORDS = 30  # a shorter final chunk is merged into the previous one
# A section with only a few words of text is mostly what a dropped table or template left behind
# ("(UK) (FRA) (UK)", "Sources: Census.gov"): it yields no passage and so no query.
MIN_PASSAGE_WORDS = 5


# --- 1. pages -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Page:
    page_id: str
    title: str
    text: str


DISAMBIGUATION = re.compile(
    r"\{\{\s*(?:[^|{}]*?disambig(?:uation)?|dab|disamb|geodis|hndis)\s*(?:\||\}\})",
    re.IGNORECASE)
REDIRECT_TEXT = re.compile(r"#REDIRECT\s*\[\[([^\]|#]*)", re.IGNORECASE)


def iter_pages(path: Path = DUMP) -> Iterator[ET.Element]:
    """Stream the ``<page>`` elements of a MediaWiki XML export (bz2) one at a time."""
    with bz2.open(path) as f:
        for _, elem in ET.iterparse(f):
            if elem.tag == XML_NS + "page":
                yield elem
                elem.clear()  # free the page's text: the full dump need not sit in memory


def page_text(elem: ET.Element) -> str:
    return elem.findtext(f"{XML_NS}revision/{XML_NS}text") or ""


def redirect_target(elem: ET.Element) -> str | None:
    """The target title if the page is a redirect (``<redirect>`` or ``#REDIRECT [[...]]``)."""
    tag = elem.find(XML_NS + "redirect")
    if tag is not None:
        return tag.get("title", "")
    match = REDIRECT_TEXT.match(page_text(elem).lstrip())
    return match.group(1) if match else None


def is_disambiguation(title: str, text: str) -> bool:
    return title.endswith("(disambiguation)") or DISAMBIGUATION.search(text) is not None


def read_pages(path: Path = DUMP) -> tuple[list[Page], dict[str, str]]:
    """Real articles of namespace 0, and the redirect map (title -> target) to resolve links."""
    articles, redirects = [], {}
    for elem in iter_pages(path):
        if elem.findtext(XML_NS + "ns") != "0":
            continue
        title, target = elem.findtext(XML_NS + "title"), redirect_target(elem)
        if target is not None:
            redirects[normalize_link(title)] = normalize_link(target)
        elif not is_disambiguation(title, page_text(elem)):
            articles.append(Page(elem.findtext(XML_NS + "id"), title, page_text(elem)))
    return articles, redirects


# --- 2. links -------------------------------------------------------------------------------
DROP_NAMESPACES = {"file", "image", "media", "category"}  # images (with captions), categories
OTHER_WIKIS = {"wikt", "wiktionary", "s", "wikisource", "q", "wikiquote", "b", "wikibooks", "n",
               "wikinews", "v", "wikiversity", "voy", "wikivoyage", "commons", "species", "meta",
               "m", "w", "wikipedia", "wp", "help", "portal", "template", "user", "special",
               "talk", "doi", "d", "wikidata"}
LANGUAGE_PREFIX = re.compile(r"[a-z]{2,3}(?:-[a-z]+)*|simple")


def normalize_link(target: str) -> str:
    """A link target as a page title: no ``#anchor``, spaces not underscores, first letter upper."""
    title = " ".join(html.unescape(target).split("#", 1)[0].replace("_", " ").split())
    return title[:1].upper() + title[1:]


def link_kind(target: str, has_text: bool) -> str:
    """``"drop"`` (file/category/interlanguage), ``"text"`` (other wikis) or ``"internal"``."""
    colon = target.startswith(":")  # [[:Category:X]] shows a link instead of categorising
    prefix = target.lstrip(":").split(":", 1)[0].strip() if ":" in target.lstrip(":") else ""
    if prefix.lower() in DROP_NAMESPACES and not colon:
        return "drop"
    if LANGUAGE_PREFIX.fullmatch(prefix) and not colon and not has_text:
        return "drop"  # interlanguage link [[fr:Anarchisme]]: rendered in the sidebar, not the text
    if colon or prefix.lower() in OTHER_WIKIS or LANGUAGE_PREFIX.fullmatch(prefix):
        return "text"
    return "internal"


# --- 3. wikitext -> plain text with link markers ----------------------------------------------
# Each internal link is marked in the text by one private-use character, chr(MARK + i), placed
# just before its display text; i indexes the section's link list (room for 6,400 links, far more
# than any section has). The marker sticks to the first word of the link, so after chunking each
# passage can tell which links fall inside it.
MARK = 0xE000
MARKERS = re.compile("[\ue000-\uf8ff]")
DROP_TAGS = {"ref", "references", "table", "gallery", "math", "timeline", "imagemap", "score",
             "chem", "ce", "syntaxhighlight", "source", "hiero", "graph", "mapframe"}
SPACE_TAGS = {"br", "hr"}
RANGE_WORDS = {"-", "–", "to", "and", "or", "by", "x", "+", "to(-)"}


def convert_text(params: list[str]) -> str:
    """{{convert|5|km}} -> "5 km"; a range {{convert|5|to|10|km}} -> "5 to 10 km"."""
    return " ".join(params[:4] if len(params) >= 4 and params[1] in RANGE_WORDS else params[:2])


# Inline templates that print words inside a sentence, with what they print (from the already
# rendered positional parameters). All other templates are dropped.
INLINE_TEMPLATES: dict[str, Callable[[list[str]], str]] = {
    "convert": convert_text, "cvt": convert_text,
    "as of": lambda p: f"As of {p[0]}", "lang": lambda p: p[1], "transl": lambda p: p[-1],
    "nowrap": lambda p: p[0], "small": lambda p: p[0], "smaller": lambda p: p[0],
    "vanchor": lambda p: p[0], "nihongo": lambda p: p[0], "sic": lambda p: p[0],
    "quote": lambda p: p[0],
}


def render(code: Wikicode, links: list[str]) -> str:
    """Plain text of parsed wikitext; internal link targets are appended to ``links``."""
    return "".join(render_node(node, links) for node in code.nodes)


def render_node(node, links: list[str]) -> str:
    if isinstance(node, Text):
        return node.value
    if isinstance(node, Wikilink):
        return render_wikilink(node, links)
    if isinstance(node, ExternalLink):
        return render(node.title, links) if node.title else ""  # a bare URL is not prose
    if isinstance(node, HTMLEntity):
        return node.normalize()
    if isinstance(node, Tag):
        return render_tag(node, links)
    if isinstance(node, Template):
        return render_template(node, links)
    return ""  # comments, template arguments, stray headings


def render_wikilink(node: Wikilink, links: list[str]) -> str:
    target = str(node.title).strip()
    kind = link_kind(target, node.text is not None)
    if kind == "drop":
        return ""
    shown = render(node.text, links).strip() if node.text else ""
    if kind == "text":  # [[wikt:anarchy]] shows "anarchy" but is no article of this wiki
        return shown or target.lstrip(":").split(":", 1)[-1]
    shown, title = shown or target, normalize_link(target)
    if not title:  # [[#Section]] points into the same page
        return shown
    links.append(title)
    return chr(MARK + len(links) - 1) + shown


def render_tag(node: Tag, links: list[str]) -> str:
    name = str(node.tag).strip().lower()
    if name in DROP_TAGS:
        return ""
    if name in SPACE_TAGS:
        return " "
    if node.self_closing:  # list markers (* # : ;) are kept until lines are grouped
        return str(node.wiki_markup or "")
    return render(node.contents, links)


def render_template(node: Template, links: list[str]) -> str:
    printer = INLINE_TEMPLATES.get(str(node.name).strip().lower())
    if printer is None:
        return ""  # infoboxes, citations, hatnotes, navboxes: not running prose
    params = [render(p.value, links).strip() for p in node.params if not p.showkey]
    try:
        return printer(params)
    except IndexError:  # a template used with too few parameters prints nothing
        return ""


# --- 4. cleaning ------------------------------------------------------------------------------
COMMENTS = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
QUOTES = re.compile(r"'{2,}")
LIST_MARKERS = re.compile(r"^[*#:;]+\s*")
MAGIC_WORDS = re.compile(r"__[A-Z]+__")
# Markup that a broken page leaves as plain text (an unclosed <ref>, a stray "}}"): removed so no
# passage shows wiki syntax.
LEFTOVERS = re.compile(
    r"<ref[^>]*>.*|</?[a-zA-Z][^<>]*>|\{\{|\}\}|\[\[|\]\]|\{\||\|\}|'{2,}|={2,}")
# Holes left by dropped templates, references and math: "( )", "(; born", "word ,", ", ,", a line
# that starts with ", which".
PUNCT_FIXES = [
    (re.compile(r"^[,;:\s]+"), ""),
    (re.compile(r"\(\s*(?:[,;:]\s*)+"), "("),
    (re.compile(r"(?:\s*[,;:])+\s*\)"), ")"),
    (re.compile(r"\(\s*\)|\[\s*\]"), ""),
    (re.compile(r"\s+([,.;:!?)\]])"), r"\1"),
    (re.compile(r"([(\[])\s+"), r"\1"),
    (re.compile(r"([,;:])(?:\s*[,;:])+"), r"\1"),
    (re.compile(r"[,;:]([.!?])"), r"\1"),
]
ALNUM = re.compile(r"\w")


def strip_quotes(wikitext: str) -> str:
    """Drop bold/italic quote runs before parsing (MediaWiki closes them at each line end;
    mwparserfromhell may not, and then swallows what follows). Four quotes are "'" + bold."""
    return QUOTES.sub(lambda m: "'" if len(m.group()) == 4 else "", wikitext)


def clean_line(line: str) -> str:
    line = LIST_MARKERS.sub("", " ".join(html.unescape(line).split()))
    line = " ".join(LEFTOVERS.sub(" ", MAGIC_WORDS.sub("", line)).split())
    for pattern, repl in PUNCT_FIXES:
        line = pattern.sub(repl, line)
    return " ".join(line.split())


def paragraphs(text: str) -> list[str]:
    """Join rendered lines into paragraphs and list items, as MediaWiki does: a single newline
    inside a paragraph is a space; a blank line or a list item starts a new block."""
    blocks: list[str] = []
    joinable = False
    for line in text.splitlines():
        item = LIST_MARKERS.match(line) is not None
        if line.strip() and joinable and not item:
            blocks[-1] += " " + line
        elif line.strip():
            blocks.append(line)
        joinable = bool(line.strip()) and not item
    return blocks


def clean_lines(text: str) -> list[str]:
    """Cleaned, non-empty paragraphs and list items of rendered text."""
    lines = (clean_line(block) for block in paragraphs(text))
    return [line for line in lines if ALNUM.search(MARKERS.sub("", line))]


def wikitext_to_lines(wikitext: str, links: list[str]) -> list[str]:
    """Wikitext of one section body -> cleaned lines; internal link targets go to ``links``."""
    return clean_lines(render(mwparserfromhell.parse(strip_quotes(wikitext)), links))


def clean_wikitext(wikitext: str) -> tuple[str, list[str]]:
    """Plain text of a wikitext snippet and its internal links (for inspection and tests)."""
    links: list[str] = []
    text = MARKERS.sub("", " ".join(wikitext_to_lines(wikitext, links)))
    return text, list(dict.fromkeys(links))


# --- 5. sections --------------------------------------------------------------------------------
HEADING = re.compile(r"^(={1,6})(.+?)\1[ \t]*$", re.MULTILINE)
BOILERPLATE = {"references", "reference", "external links", "external link", "see also", "notes",
               "note", "further reading", "bibliography", "sources", "source", "citations",
               "footnotes", "works cited", "gallery", "notes and references"}
AND_SPLIT = re.compile(r"\s*(?:,|&|\band\b)\s*")


@dataclass(frozen=True)
class Section:
    path: tuple[str, ...]  # (article, section, subsection, ...); the lead is (article,)
    body: str  # the section's own wikitext, up to the next heading of any level


def is_boilerplate(heading: str) -> bool:
    """True for "References", "Notes and references", "Sources, further reading", ...:
    headings whose every part is a boilerplate name."""
    parts = [p for p in AND_SPLIT.split(heading.strip().lower()) if p]
    return bool(parts) and all(p in BOILERPLATE for p in parts)


def heading_text(raw: str) -> str:
    return MARKERS.sub("", " ".join(wikitext_to_lines(raw, [])))


def split_sections(title: str, wikitext: str) -> list[Section]:
    """Cut an article at its heading lines into a tree of sections, minus boilerplate subtrees."""
    wikitext = MARKERS.sub("", COMMENTS.sub("", wikitext))  # a commented-out heading is no heading
    matches = list(HEADING.finditer(wikitext))
    sections = [Section((title,), wikitext[: matches[0].start() if matches else len(wikitext)])]
    stack: list[tuple[int, str, bool]] = []  # open headings: (level, text, dropped)
    for i, m in enumerate(matches):
        level, text = len(m.group(1)), heading_text(m.group(2))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, text, is_boilerplate(text) or any(s[2] for s in stack)))
        end = matches[i + 1].start() if i + 1 < len(matches) else len(wikitext)
        if not stack[-1][2]:
            sections.append(Section((title, *(s[1] for s in stack)), wikitext[m.end(): end]))
    return sections


# --- 6. sentences and passages --------------------------------------------------------------------
# A sentence ends at . ! or ? (maybe followed by a quote or bracket) before a capital or digit,
# but not after an initial ("J. Smith", "U.S. Army") or a common abbreviation ("St. Louis").
# Imperfect splits only move chunk boundaries, never text.
ABBREVIATIONS = ("Mr", "Mrs", "Dr", "St", "Jr", "Sr", "No", "vs", "ca", "c")
SENTENCE_END = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)\]]))(?<!\b[A-Z]\.)"
    + "".join(rf"(?<!\b{a}\.)" for a in ABBREVIATIONS)
    + r"\s+(?=[\ue000-\uf8ff\"'“‘(\[]*[A-Z0-9])")


def split_sentences(lines: list[str]) -> list[str]:
    """Sentences of a section; a line (paragraph, list item) always ends a sentence."""
    return [s for line in lines for s in SENTENCE_END.split(line) if s]


def chunk_sentences(sentences: list[str], size: int = CHUNK_WORDS,
                    min_last: int = MIN_LAST_WORDS) -> list[str]:
    """Group sentences into chunks of >= ``size`` words; a final chunk under ``min_last`` words
    joins the previous one (a passage of a few words is no passage)."""
    chunks, current = [], []
    for sentence in sentences:
        current.append(sentence)
        if sum(len(s.split()) for s in current) >= size:
            chunks.append(" ".join(current))
            current = []
    if current:
        last = " ".join(current)
        if chunks and len(last.split()) < min_last:
            chunks[-1] += " " + last
        else:
            chunks.append(last)
    return chunks


def take_links(chunk: str, links: list[str], redirects: dict[str, str]) -> tuple[str, list[str]]:
    """A chunk's text without link markers, and the (redirect-resolved) targets inside it."""
    targets = [links[ord(c) - MARK] for c in MARKERS.findall(chunk)]
    resolved = [redirects.get(t, t) for t in targets]
    return MARKERS.sub("", chunk), list(dict.fromkeys(resolved))


def section_passages(section: Section, redirects: dict[str, str]) -> list[tuple[str, list[str]]]:
    """(text, links) of each passage of a section's own text."""
    links: list[str] = []
    chunks = chunk_sentences(split_sentences(wikitext_to_lines(section.body, links)))
    return [take_links(chunk, links, redirects) for chunk in chunks
            if len(chunk.split()) >= MIN_PASSAGE_WORDS]


# --- 7. corpus, queries, labels, splits -----------------------------------------------------------
def article_corpus(page: Page, redirects: dict[str, str]) -> dict[str, dict]:
    """pid -> passage entry for every passage of one article, in reading order."""
    corpus = {}
    for section in split_sections(page.title, page.text):
        for text, links in section_passages(section, redirects):
            corpus[f"{page.page_id}-{len(corpus):03d}"] = {
                "title": page.title, "text": text, "article": page.title,
                "section": " / ".join(section.path), "lead": len(section.path) == 1,
                "links": links}
    return corpus


def build_queries(corpus: dict[str, dict]) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """One query per non-lead heading path; its qrels are all the passages under that heading
    (a path that occurs twice in an article is one query: the text cannot tell them apart)."""
    qid_of: dict[tuple[str, str], str] = {}  # (article id, heading path) -> qid
    per_article: Counter[str] = Counter()
    queries, qrels = {}, {}
    for pid, doc in corpus.items():
        if doc["lead"]:
            continue
        key = (pid.rsplit("-", 1)[0], doc["section"])
        if key not in qid_of:
            qid_of[key] = f"{key[0]}-q{per_article[key[0]]:03d}"
            per_article[key[0]] += 1
            queries[qid_of[key]], qrels[qid_of[key]] = doc["section"], {}
        qrels[qid_of[key]][pid] = 1
    return queries, qrels


def pick_positives(qrels: dict[str, dict[str, int]], seed: int) -> dict[str, list[str]]:
    """ONE labelled positive per query, drawn at random: the rest become hidden positives."""
    rng = random.Random(seed)
    return {qid: [rng.choice(sorted(qrels[qid]))] for qid in sorted(qrels)}


def split_articles(titles: list[str], seed: int) -> dict[str, set[str]]:
    """Article titles per split: a seeded shuffle of the sorted titles, cut ~70/12/18."""
    order = sorted(titles)
    random.Random(seed).shuffle(order)
    n_dev, n_test = (round(SPLIT_FRACTIONS[s] * len(order)) for s in ("dev", "test"))
    return {"train": set(order[n_dev + n_test:]), "dev": set(order[:n_dev]),
            "test": set(order[n_dev: n_dev + n_test])}


def assemble(corpus: dict[str, dict], seed: int) -> RetrievalData:
    """Queries, labels and splits on top of a corpus (cheap: only this depends on the seed)."""
    queries, qrels = build_queries(corpus)
    article_of = {pid: doc["article"] for pid, doc in corpus.items()}
    by_split = split_articles(sorted(set(article_of.values())), seed)
    splits = {s: [q for q in queries if article_of[next(iter(qrels[q]))] in by_split[s]]
              for s in SPLITS}
    split_pids = {s: [p for p in corpus if article_of[p] in by_split[s]] for s in SPLITS}
    return RetrievalData(NAME, corpus, queries, qrels, pick_positives(qrels, seed), splits,
                         split_pids)


# --- 8. public API -----------------------------------------------------------------------------
def build_corpus(path: Path = DUMP) -> dict[str, dict]:
    """All passages of all real articles in the dump (the slow part: a few seconds)."""
    pages, redirects = read_pages(path)
    return {pid: doc for page in pages for pid, doc in article_corpus(page, redirects).items()}


def build_wikicar(folder: Path, seed: int = 0) -> RetrievalData:
    """Parse the dump, build wiki-car with ``seed`` (splits, labels) and save it into ``folder``."""
    data = assemble(build_corpus(), seed)
    data.save(folder)
    return data


def load_wikicar(seed: int = 0, rebuild: bool = False, qrels: str = "hierarchical") -> RetrievalData:
    """wiki-car from the cache (``$RETRLAB_HOME/wikicar-v1-seed{seed}``), built on first use.

    ``qrels`` picks the ground truth (module docstring): ``"hierarchical"`` (TREC CAR's default and
    ours), ``"toplevel"`` or ``"article"``. Labels (``positives``) are the same under every flavour.
    """
    if qrels not in QRELS_FLAVOURS:
        raise ValueError(f"qrels must be one of {QRELS_FLAVOURS}, got {qrels!r}")

    def build(folder: Path) -> None:
        print(f"Building wiki-car (seed {seed}) from the gensim Wikipedia sample, once ...",
              end=" ", flush=True)
        start = time.perf_counter()
        build_wikicar(folder, seed)
        print(f"done in {time.perf_counter() - start:.1f} s")

    data = RetrievalData.load(cached_dir(f"wikicar-{VERSION}-seed{seed}", build, rebuild=rebuild))
    return data if qrels == "hierarchical" else with_qrels_flavour(data, qrels)


# --- 8b. where a passage sits relative to a query's heading; the qrels flavours -----------------
QRELS_FLAVOURS = ("hierarchical", "toplevel", "article")
RELATIONS = ("relevant", "lead", "parent", "child", "sibling", "other-section", "other-article")


def heading_of(data: RetrievalData, pid: str) -> tuple[str, ...]:
    """A passage's heading path, e.g. ``("Apollo", "Roman cult", "Festivals")``; the lead is ``("Apollo",)``."""
    return tuple(data.corpus[pid]["section"].split(" / "))


def query_heading(data: RetrievalData, qid: str) -> tuple[str, ...]:
    """A query's heading path: the heading of its labelled positive (a heading may contain " / ")."""
    return heading_of(data, data.positives[qid][0])


def relation(data: RetrievalData, qid: str, pid: str) -> str:
    """Where passage ``pid`` sits relative to query ``qid``'s heading (one of ``RELATIONS``).

    ``relevant`` (in the qrels), then by heading path: ``lead`` (the article's opening), ``parent``
    (a heading above the query's), ``child`` (a sub-section of it), ``sibling`` (another heading under
    the same top-level section), ``other-section`` of the same article, ``other-article``.
    """
    if data.qrels[qid].get(pid, 0) > 0:
        return "relevant"
    query, passage = query_heading(data, qid), heading_of(data, pid)
    if passage[0] != query[0]:
        return "other-article"
    if len(passage) == 1:
        return "lead"
    if len(passage) < len(query) and query[:len(passage)] == passage:
        return "parent"
    if len(passage) > len(query) and passage[:len(query)] == query:
        return "child"
    return "sibling" if passage[:2] == query[:2] else "other-section"


def flavour_qrels(data: RetrievalData, flavour: str) -> dict[str, dict[str, int]]:
    """The qrels of every query under ``flavour`` (a superset of the hierarchical qrels)."""
    if flavour not in QRELS_FLAVOURS:
        raise ValueError(f"qrels flavour must be one of {QRELS_FLAVOURS}, got {flavour!r}")
    width = {"hierarchical": None, "toplevel": 2, "article": 1}[flavour]
    if width is None:
        return {q: dict(rels) for q, rels in data.qrels.items()}
    under: dict[tuple[str, ...], list[str]] = {}  # heading prefix -> passages below it
    for pid in data.corpus:
        under.setdefault(heading_of(data, pid)[:width], []).append(pid)
    return {q: {**{p: 1 for p in under.get(query_heading(data, q)[:width], [])}, **rels}
            for q, rels in data.qrels.items()}


def with_qrels_flavour(data: RetrievalData, flavour: str) -> RetrievalData:
    """A copy of wiki-car whose ground truth is ``flavour``'s (labels and splits unchanged)."""
    return RetrievalData(f"{data.name}-{flavour}", data.corpus, data.queries, flavour_qrels(data, flavour),
                         data.positives, data.splits, data.split_pids)


def article_links(data: RetrievalData) -> dict[str, set[str]]:
    """Article title -> the titles its passages link to (redirects resolved)."""
    out: dict[str, set[str]] = {}
    for doc in data.corpus.values():
        out.setdefault(doc["article"], set()).update(doc.get("links", []))
    return out


# --- 9. data card ---------------------------------------------------------------------------------
def word_stats(texts: list[str]) -> dict[str, float]:
    words = sorted(len(t.split()) for t in texts)
    return {"mean": statistics.fmean(words), "median": statistics.median(words),
            "p95": statistics.quantiles(words, n=20)[-1]}


def data_card(data: RetrievalData) -> dict:
    """The numbers worth knowing about a RetrievalData before training on it (any dataset: one
    without article metadata counts each passage as its own article)."""
    article = {pid: doc.get("article", pid) for pid, doc in data.corpus.items()}
    titles = set(article.values())
    relevant = [len(rel) for rel in data.qrels.values()]  # judged queries (BEIR may list others)
    links = [t for doc in data.corpus.values() for t in doc.get("links", [])]
    return {
        "name": data.name,
        "articles": {**{s: len({article[p] for p in data.search_pids(s)}) for s in data.splits},
                     "all": len(titles)},
        "passages": {**{s: len(data.search_pids(s)) for s in data.splits},
                     "all": len(data.corpus)},
        "queries": {**{s: len(q) for s, q in data.splits.items()}, "all": len(data.queries)},
        "passage_words": word_stats([doc["text"] for doc in data.corpus.values()]),
        "relevant_per_query": {"mean": statistics.fmean(relevant),
                               "exactly_one": sum(r == 1 for r in relevant) / len(relevant)},
        "links": {"total": len(links), "inside_sample": sum(t in titles for t in links)},
        "hidden_positives": sum(len(data.hidden_positives(q)) for q in data.queries),
    }


def format_card(card: dict) -> str:
    """The data card as a few readable lines."""
    def per_split(key: str) -> str:
        return "  ".join(f"{s} {n:>5}" for s, n in card[key].items())

    words, rel, links = card["passage_words"], card["relevant_per_query"], card["links"]
    return "\n".join([
        f"{card['name']}",
        f"  articles   {per_split('articles')}",
        f"  passages   {per_split('passages')}",
        f"  queries    {per_split('queries')}",
        f"  passage words: mean {words['mean']:.1f}, median {words['median']:.0f}, "
        f"p95 {words['p95']:.0f}",
        f"  relevant passages per query: mean {rel['mean']:.2f}, "
        f"exactly one for {rel['exactly_one']:.0%} of queries",
        f"  internal links: {links['total']}, of which {links['inside_sample']} point to an "
        f"article inside the sample",
        f"  hidden positives (relevant but unlabelled): {card['hidden_positives']}",
    ])
