"""Text utilities shared by extraction, indexing and answering: sentences, words, name keys."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

# Words that end with a period without ending a sentence. Corporate suffixes (Inc., Corp.) are
# deliberately absent: in transcripts they often do end a sentence, and when they do not, the next
# word is lower-case, which the splitter already respects.
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof st jr sr no nos vs etc e.g i.e u.s u.k u.n approx dept est fig
    jan feb mar apr jun jul aug sep sept oct nov dec col gen lt maj capt cmdr sgt rev hon gov
    sen rep ft mt adm brig cpl pvt pres supt assoc univ bros cf al op pp vol ed eds""".split()
)

_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]\.?")
_CORPORATE_ABBREVIATIONS = frozenset({"inc", "corp", "co", "ltd", "plc", "llc"})
_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)")
_NEXT_START = re.compile(r"\s+([\"'“‘(\[]?[A-Z0-9$€£¥])")


@dataclass(frozen=True)
class Span:
    text: str
    start: int
    end: int


def _previous_token(text: str, end: int) -> str:
    """The word right before position ``end`` (a period), skipping one space as in 'D . Baker'."""
    i = end
    while i > 0 and text[i - 1] == " ":
        i -= 1
    j = i
    while j > 0 and (text[j - 1].isalnum() or text[j - 1] == "."):
        j -= 1
    return text[j:i]


def _is_boundary(text: str, match: re.Match[str]) -> bool:
    nxt = _NEXT_START.match(text, match.end())
    if nxt is None:  # next word starts lower-case or with punctuation: not a sentence end
        return False
    if "." not in match.group(0) or match.group(0)[0] != ".":
        return True
    prev = _previous_token(text, match.start())
    if not prev:
        return True
    if len(prev) == 1 and prev.isalpha() and prev.isupper():
        return False  # an initial: "Newton D. Baker", "D . Baker"
    if _DOTTED.fullmatch(prev):
        return False  # letters with dots: "C.D . Montijo", "U.S. Steel"
    if nxt.group(1).startswith("(") and prev.lower() in _CORPORATE_ABBREVIATIONS:
        return False  # "Apple Inc. (NASDAQ: AAPL) reported ...": the company's own aside
    return prev.lower().rstrip(".") not in _ABBREVIATIONS


def split_sentences(text: str) -> Iterator[Span]:
    """Sentences with offsets. Newlines always end a sentence (transcripts put speakers on lines)."""
    line_start = 0
    for line in text.split("\n"):
        start = line_start
        line_start += len(line) + 1
        if not line.strip():
            continue
        cursor = 0
        for m in _BOUNDARY.finditer(line):
            if _is_boundary(line, m):
                yield from _emit(line, cursor, m.end(), start)
                cursor = m.end()
        yield from _emit(line, cursor, len(line), start)


def _emit(line: str, begin: int, end: int, offset: int) -> Iterator[Span]:
    piece = line[begin:end]
    stripped = piece.strip()
    if stripped:
        lead = len(piece) - len(piece.lstrip())
        s = offset + begin + lead
        yield Span(stripped, s, s + len(stripped))


# ---- words -----------------------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
STOPWORDS = frozenset(
    """a an and are as at be been but by did do does for from had has have he her his how i if in
    into is it its of on or our she so than that the their them there these they this those to
    up was we were what when where which who whom whose why will with would you your
    about after all also any before between both during each few more most other over same some
    such then through under until very can could should may might must shall s""".split()
)


def _stem(word: str) -> str:
    # Light plural stripping only: "margins" ~ "margin", "companies" ~ "company". Heavier
    # stemming merges metric names that must stay apart ("operating" vs "operations").
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Lower-cased word tokens without stop words, lightly stemmed: the lexical index's terms."""
    # A possessive is its name: "Acme's" must match "Acme", not become the term "acme'".
    tokens = (w.removesuffix("'s") for w in _WORD.findall(fold(text)))
    return [_stem(w) for w in tokens if w not in STOPWORDS]


def fold(text: str) -> str:
    """Lower case, accents removed, typographic quotes made plain."""
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return text.replace("’", "'").replace("‘", "'").lower()


# ---- entity name keys ------------------------------------------------------------------------
_CORPORATE_SUFFIXES = frozenset(
    """inc incorporated corp corporation co company companies ltd limited plc llc lp llp ag sa nv
    se spa gmbh bv holdings holding group the""".split()
)


def name_key(name: str) -> str:
    """A key under which spellings of one name meet: 'Crocs, Inc.' / 'crocs' / "Crocs's" / 'CROCS'.

    A trailing 's is read as a possessive, so "Croc's" (a misspelt "Crocs'") keys to "croc".
    """
    folded = fold(name).replace("&", " and ")
    folded = re.sub(r"'s\b", "", folded)
    # Dotted abbreviations are one token: "S.A." / "N.V." are suffixes, "J.P." is "jp".
    folded = re.sub(r"\b([a-z])\.(?=[a-z]\b)", r"\1", folded)
    tokens = re.findall(r"[a-z0-9]+", folded)
    while tokens and tokens[-1] in _CORPORATE_SUFFIXES and len(tokens) > 1:
        tokens.pop()
    while tokens and tokens[0] == "the" and len(tokens) > 1:
        tokens.pop(0)
    return " ".join(tokens)


def with_subject(subject: str | None, text: str) -> str:
    """The text a fact is indexed under: its sentence, prefixed by its subject when the sentence
    leaves it implicit ("Revenue was $4.1 billion." in a call by Acme). Without the prefix, a
    question naming the company matches any sentence that names it, whatever it says."""
    if not subject:
        return text
    key = name_key(subject)
    return text if not key or f" {key} " in f" {name_key(text)} " else f"{subject}: {text}"


def is_binary(text: str) -> bool:
    """True for text that is really binary data: NUL bytes or mostly control characters."""
    if "\x00" in text:
        return True
    sample = text[:4096]
    if not sample:
        return False
    control = sum(1 for c in sample if ord(c) < 32 and c not in "\n\r\t\f")
    return control / len(sample) > 0.1
