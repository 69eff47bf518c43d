"""Entity mentions by rule: capitalised name sequences, corporate names, tickers, initials.

No model and no gazetteer: a name is a run of capitalised tokens (with initials, "of", "&" and
corporate suffixes inside), minus a sentence-initial common word. Types come from cues: corporate
and institutional words make an organisation, initials or honorifics a person.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..model import EntityMention, EntityType
from ..text import STOPWORDS

# Letters and digits in any script ("Zé Pedro", "Schönfeld"); [^\W_] is \w without the underscore.
_TOKEN = re.compile(r"[^\W_][\w'’.&-]*[^\W_]|[^\W_]|[^\s\w]|_")

# Acronyms and words that are capitalised but name no entity of their own.
_NOT_ENTITIES = frozenset(
    """ceo cfo coo cto cio evp svp vp ir gaap non-gaap eps ebitda ebit ebitdar affo ffo noi roe roi roic roa
    yoy qoq ttm ytd usd rmb eur gbp jpy hkd krw cad aud chf us usa u.s uk eu ai it hr esg ok i q1 q2 q3 q4
    h1 h2 fy ads adr sg&a r&d capex opex dtc b2b b2c saas arr kpi ltm bps pp fx cagr capital operator
    january february march april may june july august september october november december
    monday tuesday wednesday thursday friday saturday sunday thank thanks okay yes no hi hello good
    mr mrs ms dr sir inc corp ltd plc llc co q&a i'll i'd i'm i've
    nyse nasdaq amex tsx lse hkex sehk otc""".split()
)
# Job titles are capitalised in transcripts ("Chief Financial Officer") but are roles, not entities.
_ROLE_WORDS = frozenset(
    """chief executive officer financial operating technology marketing commercial strategy officers vice
    president senior executive investor relations director directors head general counsel treasurer
    secretary chairman chairwoman chair board manager managing partner analyst corporate group global
    deputy assistant principal lead founder co-founder interim acting and of""".split()
)
# Sentence-initial words that are capitalised only because they start the sentence.
_COMMON_STARTERS = STOPWORDS | frozenset(
    """adjusted total net gross operating organic diluted comparable free cash revenue revenues sales
    income earnings margin margins now turning looking moving overall additionally again finally however
    as while although though since because given despite during let let's so well first second third
    fourth next last today yesterday here there please slide starting including excluding within across
    year quarter fiscal full this these our my your their its going building based according regarding
    in on at for with from by to of after before over under through into then yet still even also just
    gaap non-gaap other another new record strong higher lower""".split()
)
_CONNECTORS = frozenset(
    {"of", "de", "la", "du", "van", "von", "der", "den", "da", "del", "&", "y", "bin", "al"}
)
_CORPORATE = frozenset(
    """inc inc. incorporated corp corp. corporation co co. company ltd ltd. limited plc llc l.p. lp llp ag sa
    n.v. nv se s.a. gmbh holdings group""".split()
)
_ORG_WORDS = frozenset(
    """inc incorporated corp corporation company co ltd limited plc llc lp holdings group bank university
    college school institute academy club fc united party council federation association army navy guard
    brigade division regiment corps court committee ministry department league agency foundation society
    museum church records airlines airways motors systems technologies technology partners properties
    financial resources industries laboratories labs entertainment media network studios government
    senate parliament assembly commission office board trust fund capital energy petroleum chemical
    pharmaceuticals insurance bancorp railway railways team orchestra band house hospital""".split()
)
_PLACE_WORDS = frozenset(
    """county city river island islands province state lake mountain street avenue""".split()
)
_HONORIFICS = frozenset(
    """mr mrs ms dr sir dame lord lady col gen maj capt lt sgt adm president senator
    governor king queen prince princess pope saint st""".split()
)
# Acronyms dropped from the end of a name; corporate suffixes stay: "Apple Inc." is the name.
_TRAILING_JUNK = _NOT_ENTITIES - _CORPORATE
_ROLE_AFTER = re.compile(
    r"^\s*,?\s*(?:--\s*)?(?:the\s+|our\s+|a\s+)?(?:chief|president|chairman|chairwoman|ceo|cfo|coo|director|"
    r"vice|senior|executive|head|founder|manager|analyst|secretary|minister|professor|coach|editor)",
    re.IGNORECASE,
)


@dataclass
class _Token:
    text: str
    start: int
    end: int


def _is_capitalised(tok: str) -> bool:
    if not tok[0].isalpha():
        return tok[0].isdigit() and any(c.isalpha() for c in tok) and any(c.isupper() for c in tok)
    if tok[0].isupper():
        return True
    return "-" not in tok and any(c.isupper() for c in tok[1:])  # eBay, iPhone; not "non-GAAP"


def find_mentions(sentence: str) -> list[EntityMention]:
    tokens = [_Token(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(sentence)]
    mentions: list[EntityMention] = []
    i = 0
    first_word = next((k for k, t in enumerate(tokens) if t.text[0].isalnum()), 0)
    while i < len(tokens):
        tok = tokens[i].text
        if not _is_capitalised(tok):
            i += 1
            continue
        j = _extend(tokens, i)
        span = tokens[i:j]
        if i == first_word and span[0].text.lower().rstrip(".") in _COMMON_STARTERS:
            span = span[1:]
            while span and (span[0].text.lower() in _CONNECTORS or not span[0].text[0].isalnum()):
                span = span[1:]
        dropped = len(span) < j - i
        mention = _to_mention(
            sentence,
            span,
            sentence_initial=(i == first_word and not dropped),
            after_determiner=dropped or _after_determiner(tokens, i),
        )
        if mention is not None:
            mentions.append(mention)
        i = max(j, i + 1)
    return mentions


def _extend(tokens: list[_Token], i: int) -> int:
    """End (exclusive) of the capitalised run starting at token i."""
    j = i + 1
    while j < len(tokens):
        t = tokens[j].text
        low = re.sub(r"['’]s$", "", t.lower())
        if _is_capitalised(t) or low in _CORPORATE:
            j += 1
        elif t == "." and len(tokens[j - 1].text) == 1 and tokens[j - 1].text.isupper():
            j += 1  # an initial written "D ." as in tokenised Wikipedia text
        elif low in _CONNECTORS and j + 1 < len(tokens) and _is_capitalised(tokens[j + 1].text):
            j += 1
        elif (
            t == ","
            and j + 1 < len(tokens)
            and re.sub(r"['’]s$", "", tokens[j + 1].text.lower()) in _CORPORATE
        ):
            j += 1  # "Crocs, Inc."
        else:
            break
    while j > i + 1 and tokens[j - 1].text in {",", "&"}:
        j -= 1
    return j


_DETERMINERS = frozenset("the our their its his her this that these those a an each every".split())


def _after_determiner(tokens: list[_Token], i: int) -> bool:
    return i > 0 and tokens[i - 1].text.lower() in _DETERMINERS


def _to_mention(
    sentence: str, span: list[_Token], sentence_initial: bool, after_determiner: bool = False
) -> EntityMention | None:
    while len(span) > 1 and span[-1].text.lower().rstrip(".") in _TRAILING_JUNK:
        span = span[:-1]  # "JD Logistics GAAP" -> "JD Logistics"; "Apple Inc." keeps its suffix
    words = [t.text for t in span if t.text[0].isalnum()]
    if not words:
        return None
    lowered = [re.sub(r"['’]s$", "", w.lower()).rstrip(".") for w in words]
    if all(w in _NOT_ENTITIES or w in _CORPORATE for w in lowered) or all(w in _ROLE_WORDS for w in lowered):
        return None
    if len(words) == 1:
        w = words[0]
        plain = not (w.isupper() and len(w) > 1) and not any(c.isdigit() or c.isupper() for c in w[1:])
        if plain and (sentence_initial or after_determiner):
            return None  # "Revenue grew", "the Company's": capitalised for position or style, not names
        if len(w) < 2 or (w.lower() in _COMMON_STARTERS and not w.isupper()):
            return None
    start, end = span[0].start, span[-1].end
    text = re.sub(r"['’]s$", "", sentence[start:end].rstrip(",."))
    if text.endswith(" Inc") or text.endswith(" Co") or text.endswith(" Corp") or text.endswith(" Ltd"):
        text += "." if end < len(sentence) and sentence[end : end + 1] == "." else ""
    return EntityMention(_clean(text), _classify(sentence, span, lowered), start, start + len(text))


def _clean(text: str) -> str:
    # "Newton D . Baker" -> "Newton D. Baker": keep names comparable across tokenisations.
    return re.sub(r"\b([A-Z]) \.", r"\1.", text)


def _classify(sentence: str, span: list[_Token], lowered: list[str]) -> EntityType:
    if any(w in _ORG_WORDS for w in lowered):
        return EntityType.ORGANIZATION
    if any(w in _PLACE_WORDS for w in lowered):
        return EntityType.PLACE
    before = sentence[: span[0].start].rstrip().rstrip(".").split()
    if before and before[-1].lower() in _HONORIFICS:
        return EntityType.PERSON
    has_initial = any(len(t.text) == 1 and t.text.isupper() for t in span[1:-1])
    if 2 <= len(lowered) <= 4 and (has_initial or _ROLE_AFTER.match(sentence[span[-1].end :])):
        return EntityType.PERSON
    if len(lowered) == 1 and span[0].text.isupper() and 2 <= len(span[0].text) <= 5:
        return EntityType.ORGANIZATION  # a ticker or an acronym of one
    if any(c.isdigit() for c in "".join(lowered)):
        return EntityType.PRODUCT
    return EntityType.OTHER


_TICKER = re.compile(
    r"\((?:(?:NYSE|NASDAQ|Nasdaq|NYSEARCA|AMEX|TSX|LSE|HKEX|SEHK|OTC)\s*:\s*)?([A-Z]{1,5}(?:\.[A-Z])?)\)"
)


def find_tickers(sentence: str) -> list[tuple[str, int]]:
    """(ticker, offset) for "(NYSE: CROX)" or "(CROX)" right after a name."""
    return [
        (m.group(1), m.start()) for m in _TICKER.finditer(sentence) if m.group(1).lower() not in _NOT_ENTITIES
    ]
