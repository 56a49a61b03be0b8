"""wiki-car: a real build from the gensim Wikipedia sample, plus unit tests of its parts."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrlab.data import dataset, wikicar
from retrlab.data.dataset import RetrievalData
from retrlab.data.wikicar import (Section, chunk_sentences, clean_wikitext, is_boilerplate,
                                  link_kind, normalize_link, section_passages, split_sections,
                                  split_sentences, wikitext_to_lines)

CACHE_NAME = f"wikicar-{wikicar.VERSION}-seed0"
LEFTOVERS = ["{{", "}}", "[[", "]]", "''", "<ref", "{|", "|}", "thumb|", "==", "()", "( )", "(;",
             "(,", " ,", "&nbsp;", "&amp;"]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("retrlab-home")


@pytest.fixture(scope="module")
def data(home: Path) -> RetrievalData:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRLAB_HOME", str(home))
        return wikicar.load_wikicar(seed=0)


def article_of(data: RetrievalData, qid: str) -> str:
    return data.corpus[next(iter(data.qrels[qid]))]["article"]


# --- the real build -----------------------------------------------------------------------------
def test_counts_are_plausible(data):
    articles = {doc["article"] for doc in data.corpus.values()}
    assert 90 <= len(articles) <= 100
    assert 3500 <= len(data.corpus) <= 6000
    assert 1000 <= len(data.queries) <= 2200
    assert 2.0 <= sum(map(len, data.qrels.values())) / len(data.qrels) <= 3.5


def test_redirects_and_disambiguation_pages_are_dropped(data):
    articles = {doc["article"] for doc in data.corpus.values()}
    assert {"Anarchism", "Autism", "Albedo"} <= articles
    assert "AccessibleComputing" not in articles  # a redirect
    assert not {"Alien", "Ada", "Aa River"} & articles  # disambiguation pages
    assert not any(a.endswith("(disambiguation)") for a in articles)


def test_no_markup_leftovers_in_any_passage(data):
    for pid, doc in data.corpus.items():
        for bad in LEFTOVERS:
            assert bad not in doc["text"], (pid, bad, doc["text"])
        assert not wikicar.MARKERS.search(doc["text"]), pid
        assert doc["text"] and not doc["text"].startswith(doc["title"] + ":")


def test_image_captions_and_tables_are_dropped(data):
    text = " ".join(doc["text"] for doc in data.corpus.values())
    # Alabama's image captions and its racial-breakdown table are in the dump once each.
    assert "largest city and metropolitan area" not in text
    assert "Alabama Racial Breakdown of Population" not in text
    assert "Racial composition" not in text
    assert "px|" not in text and "class=" not in text and "wikitable" not in text


def test_splits_are_disjoint_by_article_and_cover_everything(data):
    articles = {s: {article_of(data, q) for q in data.splits[s]} for s in dataset.SPLITS}
    assert not articles["train"] & articles["test"]
    assert not articles["train"] & articles["dev"]
    assert not articles["dev"] & articles["test"]
    assert sorted(q for s in dataset.SPLITS for q in data.splits[s]) == sorted(data.queries)
    assert sorted(p for s in dataset.SPLITS for p in data.split_pids[s]) == sorted(data.corpus)
    for s in dataset.SPLITS:
        pid_articles = {data.corpus[p]["article"] for p in data.split_pids[s]}
        assert articles[s] <= pid_articles
    sizes = {s: len({data.corpus[p]["article"] for p in data.split_pids[s]})
             for s in dataset.SPLITS}
    assert sizes["train"] > sizes["test"] > sizes["dev"] > 5


def test_one_labelled_positive_per_query_and_it_is_relevant(data):
    assert set(data.positives) == set(data.queries) == set(data.qrels)
    for qid, pids in data.positives.items():
        assert len(pids) == 1 and pids[0] in data.qrels[qid]


def test_qrels_are_the_passages_of_the_query_section(data):
    in_qrels = [p for rel in data.qrels.values() for p in rel]
    assert len(in_qrels) == len(set(in_qrels))  # every passage answers at most one heading
    for qid, rel in data.qrels.items():
        for pid in rel:
            assert data.corpus[pid]["section"] == data.queries[qid]
            assert pid.rsplit("-", 1)[0] == qid.rsplit("-", 1)[0]  # same article id
            assert not data.corpus[pid]["lead"]
    non_lead = {p for p, doc in data.corpus.items() if not doc["lead"]}
    assert set(in_qrels) == non_lead  # every section passage is relevant to its heading


def test_lead_passages_are_in_the_corpus_but_are_not_queries(data):
    leads = [doc for doc in data.corpus.values() if doc["lead"]]
    assert len(leads) >= 90
    assert all(doc["section"] == doc["article"] for doc in leads)
    assert all(" / " in q for q in data.queries.values())


def test_no_boilerplate_section_becomes_a_query(data):
    for query in data.queries.values():
        for part in query.split(" / ")[1:]:
            assert not is_boilerplate(part), query
            assert part.lower() not in {"references", "external links", "see also", "notes"}


def test_links_are_normalised_and_found_in_their_passage(data):
    for doc in data.corpus.values():
        assert len(doc["links"]) == len(set(doc["links"]))
        for link in doc["links"]:
            assert link and "#" not in link and "_" not in link and link[0] == link[0].upper()
    lead = next(doc for doc in data.corpus.values()
                if doc["article"] == "Anarchism" and doc["lead"])
    assert "political philosophy" in lead["text"] and "Political philosophy" in lead["links"]
    links = wikicar.article_links(data)
    assert "Political philosophy" in links["Anarchism"]


def test_labels_and_splits_depend_on_the_seed(data):
    other = wikicar.assemble(data.corpus, seed=1)
    assert other.qrels == data.qrels and other.queries == data.queries
    assert other.positives != data.positives
    assert set(other.splits["test"]) != set(data.splits["test"])
    again = wikicar.assemble(data.corpus, seed=0)
    assert again.positives == data.positives and again.splits == data.splits


def test_same_seed_gives_identical_files_in_a_fresh_process(data, home, tmp_path):
    # A different PYTHONHASHSEED catches any dependence on set or dict-of-set ordering.
    code = f"from pathlib import Path; from retrlab.data.wikicar import build_wikicar; " \
           f"build_wikicar(Path({str(tmp_path)!r}), seed=0)"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).parents[1])
    cached = home / CACHE_NAME
    for name in ("corpus", "queries", "qrels", "positives", "splits", "split_pids", "meta"):
        assert (tmp_path / f"{name}.json").read_bytes() == (cached / f"{name}.json").read_bytes()


def test_cached_load_is_fast_and_equal(data, home, monkeypatch):
    monkeypatch.setenv("RETRLAB_HOME", str(home))
    start = time.process_time()  # CPU time: a loaded shared machine must not fail this test
    again = wikicar.load_wikicar(seed=0)
    assert time.process_time() - start < 1.0
    assert again.corpus == data.corpus and again.qrels == data.qrels
    assert again.positives == data.positives and again.splits == data.splits


def test_interrupted_build_leaves_no_cache_and_a_later_call_succeeds(data, tmp_path, monkeypatch):
    monkeypatch.setenv("RETRLAB_HOME", str(tmp_path))
    monkeypatch.setattr(wikicar, "build_corpus", lambda: data.corpus)  # skip the parse: speed
    real_write = dataset.atomic_write_json
    written = []

    def write_one_then_die(path, obj):
        if written:
            raise KeyboardInterrupt  # as if the user stopped the build midway
        written.append(path)
        return real_write(path, obj)

    monkeypatch.setattr(dataset, "atomic_write_json", write_one_then_die)
    with pytest.raises(KeyboardInterrupt):
        wikicar.load_wikicar(seed=0)
    assert written  # the build did get halfway
    assert list(tmp_path.iterdir()) == []  # neither the final folder nor a temporary one
    monkeypatch.setattr(dataset, "atomic_write_json", real_write)
    again = wikicar.load_wikicar(seed=0)
    assert (tmp_path / CACHE_NAME).is_dir()
    assert again.positives == data.positives and again.corpus == data.corpus


def test_data_card(data):
    card = wikicar.data_card(data)
    assert card["passages"]["all"] == len(data.corpus)
    assert sum(card["queries"][s] for s in dataset.SPLITS) == card["queries"]["all"]
    assert card["articles"]["all"] == sum(card["articles"][s] for s in dataset.SPLITS)
    assert card["hidden_positives"] == sum(map(len, data.qrels.values())) - len(data.qrels)
    assert 0 < card["links"]["inside_sample"] < card["links"]["total"] / 50
    assert 60 <= card["passage_words"]["median"] <= 140
    assert 0.2 < card["relevant_per_query"]["exactly_one"] < 0.6
    text = wikicar.format_card(card)
    assert str(card["passages"]["all"]) in text and str(card["hidden_positives"]) in text


# --- the cleaner --------------------------------------------------------------------------------
@pytest.mark.parametrize("wikitext, text, links", [
    ("'''Bold''' [[Target|shown]] text{{cite web|x}}<ref>r</ref>.", "Bold shown text.", ["Target"]),
    ("A [[File:X.jpg|thumb|A caption with [[Link]]]] b.", "A b.", []),
    ("End.[[Category:Foo]][[fr:Anarchisme]]", "End.", []),
    ("Before.\n{| class=wikitable\n|-\n| cell || cell2\n|}\nAfter.", "Before. After.", []),
    ("Fish&nbsp;&amp; chips<br/>today", "Fish & chips today", []),
    ("See [http://x.org the site] and [http://y.org] now.", "See the site and now.", []),
    ("Adobe ({{IPAc-en|x}}; {{IPA-es|y}}, from [[Spanish language|Spanish]]) is",
     "Adobe (from Spanish) is", ["Spanish language"]),
    ("It is {{convert|5|km}} long, {{convert|2|to|3|mi}} wide.",
     "It is 5 km long, 2 to 3 mi wide.", []),
    ("A [[wikt:anarchy|word]] and [[:Category:Foo|a category]].", "A word and a category.", []),
    ("[[foo_bar#Baz|x]] [[Foo bar]] [[#Local|here]] [[bus]]es", "x Foo bar here buses",
     ["Foo bar", "Bus"]),
    ("''Italic'' and '''''both''''' <math>x^2</math>x<!-- hidden -->.", "Italic and both x.", []),
])
def test_clean_wikitext(wikitext, text, links):
    assert clean_wikitext(wikitext) == (text, links)


def test_lines_keep_list_items_apart_and_join_wrapped_paragraphs():
    wikitext = "First line\ncontinues here.\n\n* one\n* two\n# three\n: indented\nNew para."
    lines = wikitext_to_lines(wikitext, [])
    assert lines == ["First line continues here.", "one", "two", "three", "indented", "New para."]


def test_sections_follow_heading_lines_even_after_broken_markup():
    wikitext = ("Lead with ''unclosed italics.\n== A ==\nBody a.\n=== ''B'' [[x|y]] ===\nBody b.\n"
                "<!--\n== Hidden ==\n-->\n== References and notes ==\n* cite\n=== Sub ===\nx\n"
                "== C ==\nBody c.")
    sections = split_sections("T", wikitext)
    assert [s.path for s in sections] == [("T",), ("T", "A"), ("T", "A", "B y"), ("T", "C")]
    assert [s.body.strip() for s in sections][1:] == ["Body a.", "Body b.", "Body c."]


@pytest.mark.parametrize("heading, boilerplate", [
    ("References", True), ("External links", True), ("See also", True), ("Notes", True),
    ("Notes and references", True), ("References and notes", True), ("Works cited", True),
    ("Sources and further reading", True), ("Bibliography", True), ("History", False),
    ("Notes on style", False), ("Economy and sources of income", False),
])
def test_is_boilerplate(heading, boilerplate):
    assert is_boilerplate(heading) is boilerplate


# --- sentences, chunks, links --------------------------------------------------------------------
def sentence(n: int) -> str:
    return " ".join(["word"] * (n - 1) + ["end."])


@pytest.mark.parametrize("lengths, chunk_words", [
    ([40] * 5, [120, 80]),  # closes at >= 100 words; the rest (80 >= 30) is its own chunk
    ([30] * 7, [120, 90]),
    ([60, 50, 20], [130]),  # a last chunk of 20 < 30 words joins the previous one
    ([250, 10], [260]),  # one long sentence may exceed the target
    ([10, 10], [20]),  # a short section is one short passage
])
def test_chunk_sentences(lengths, chunk_words):
    chunks = chunk_sentences([sentence(n) for n in lengths])
    assert [len(c.split()) for c in chunks] == chunk_words


def test_split_sentences_skips_initials_and_abbreviations():
    line = 'Mr. J. Smith went to St. Louis. He slept! U.S. Army is big. "Yes." Then 2 more.'
    assert split_sentences([line, "Next line"]) == [
        "Mr. J. Smith went to St. Louis.", "He slept!", "U.S. Army is big.", '"Yes."',
        "Then 2 more.", "Next line"]


def test_passage_links_are_the_links_inside_that_passage():
    # Four 25-word sentences (100 words) make the first chunk.
    first = " ".join(f"Sentence {i} has [[Alpha]] words {'x ' * 20}." for i in range(4))
    tail = " Here [[Zed|zed]] and [[beta_gamma#Part|beta]] and [[Zed]] again."  # 7 words
    filler = " " + sentence(25)
    passages = section_passages(Section(("T", "S"), first + tail + filler), {"Zed": "Zeta"})
    assert [len(text.split()) for text, _ in passages] == [100, 32]
    assert [links for _, links in passages] == [["Alpha"], ["Zeta", "Beta gamma"]]
    assert passages[1][0].startswith("Here zed and beta and Zed again.")
    merged = section_passages(Section(("T", "S"), first + tail), {})  # 7 < 30 words: merged
    assert [links for _, links in merged] == [["Alpha", "Zed", "Beta gamma"]]


def test_tiny_sections_make_no_passage():
    assert section_passages(Section(("T", "S"), "* {{ARG}} (UK)\n* {{BRA}} (FRA)"), {}) == []


@pytest.mark.parametrize("target, title", [
    ("foo_bar#Baz", "Foo bar"), ("  new   York ", "New York"), ("OS&nbsp;X", "OS X"),
    ("#Local", ""), ("iPod", "IPod"),
])
def test_normalize_link(target, title):
    assert normalize_link(target) == title


@pytest.mark.parametrize("target, has_text, kind", [
    ("File:X.jpg", True, "drop"), ("Image:X.png", False, "drop"), ("Category:Foo", False, "drop"),
    (":Category:Foo", True, "text"), ("fr:Anarchisme", False, "drop"), ("wikt:word", False, "text"),
    ("Star Wars: Episode IV", False, "internal"), ("Anarchism", True, "internal"),
])
def test_link_kind(target, has_text, kind):
    assert link_kind(target, has_text) == kind
