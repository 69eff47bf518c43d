"""Tests for the offline extractor: entity mentions, values and rule-based facts. Sentences are made up."""

from __future__ import annotations

from datetime import date

import pytest

from tgrag.chunking import chunk_document
from tgrag.extract import create_extractor
from tgrag.extract.mentions import find_mentions, find_tickers
from tgrag.extract.rules import RuleExtractor
from tgrag.extract.values import find_values
from tgrag.model import Document, EntityType, FactDraft, TimeInterval

ORG, PERSON = EntityType.ORGANIZATION, EntityType.PERSON
Q = TimeInterval.quarter


def names(sentence: str) -> list[str]:
    return [m.text for m in find_mentions(sentence)]


def typed(sentence: str) -> dict[str, EntityType]:
    return {m.text: m.type for m in find_mentions(sentence)}


# ---- mentions -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sentence", "name"),
    [
        ("Crocs, Inc.'s revenue rose 10% in the quarter.", "Crocs, Inc."),
        ("Crocs, Inc. reported record revenue.", "Crocs, Inc."),
        ("Crocs, Inc. (NASDAQ: CROX) reported record revenue.", "Crocs, Inc."),
        ("We compete with Apple Inc. in several markets.", "Apple Inc."),
        ("We sold our stake in Acme Corp. last year.", "Acme Corp."),
        ("The Macerich Company reported FFO of $0.45.", "Macerich Company"),
        ("Analysts at Bank of America raised their target.", "Bank of America"),
        (
            "Helena Castellano, chief executive officer of Asteria Labs, presented the results.",
            "Asteria Labs",
        ),
    ],
)
def test_organisations(sentence: str, name: str) -> None:
    found = typed(sentence)
    assert found.get(name) is ORG, found
    assert "Inc." not in found and "Inc" not in found


@pytest.mark.parametrize(
    ("sentence", "name"),
    [
        ("Newton D. Baker was Secretary of War.", "Newton D. Baker"),
        ("Newton D . Baker was Secretary of War .", "Newton D. Baker"),  # tokenised text, normalised
        ("Anne Gates, Chief Financial Officer, said margins rose.", "Anne Gates"),
        ("John Smith, chief executive officer of Acme, presented.", "John Smith"),
        ("Andrew Rees -- President and CEO said so.", "Andrew Rees"),
        ("We welcomed Mr. Whitford to the board.", "Whitford"),
        ("Col . William Stanley led the brigade .", "William Stanley"),
    ],
)
def test_persons(sentence: str, name: str) -> None:
    found = typed(sentence)
    assert found.get(name) is PERSON, found


def test_mention_offsets_point_at_the_name() -> None:
    sentence = "Last year Borealis Shipping hired Ingrid Moreau, chief financial officer."
    for m in find_mentions(sentence):
        assert sentence[m.start : m.end] == m.text
    assert names(sentence) == ["Borealis Shipping", "Ingrid Moreau"]


@pytest.mark.parametrize(
    "sentence",
    [
        "Revenue grew 5% this quarter.",
        "Adjusted EBITDA was $3 million.",
        "Total revenue was $12 million.",
        "Looking ahead, we expect growth to continue.",
        "However, margins were lower.",
        "We expect the Company's margins to improve.",
        "Our Chief Financial Officer will speak next.",
        "Chief Executive Officer and Vice President of Investor Relations joined.",
        "Non-GAAP EPS was $1.20.",
        "non-GAAP operating income rose.",
        "Thank you, Operator.",
        "In Q3 we grew FY revenue and EPS.",
    ],
)
def test_no_junk_mentions(sentence: str) -> None:
    assert names(sentence) == []


def test_tickers() -> None:
    sentence = "Crocs, Inc. (NASDAQ: CROX) and Apple (AAPL) but not the (CEO) or (Q3)."
    tickers = find_tickers(sentence)
    assert [t for t, _ in tickers] == ["CROX", "AAPL"]
    assert [sentence[pos : pos + 1] for _, pos in tickers] == ["(", "("]
    assert typed(sentence).get("CROX") is ORG  # a ticker is an organisation's acronym


# ---- values ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sentence", "text", "number", "unit"),
    [
        ("Revenue was $4.1 billion in the quarter.", "$4.1 billion", 4.1e9, "USD"),
        ("Sales of RMB 26.7 billion were flat.", "RMB 26.7 billion", 26.7e9, "RMB"),
        ("Orders reached €3.5bn.", "€3.5bn", 3.5e9, "EUR"),
        ("Costs were £200m lower.", "£200m", 200e6, "GBP"),
        ("Cash was US$1,234,567.89 at the end.", "US$1,234,567.89", 1234567.89, "USD"),
        ("EPS of $1.20 per share beat.", "$1.20 per share", 1.2, "USD per share"),
        ("Margin was 27.1% in the quarter.", "27.1%", 27.1, "%"),
        ("Prices rose 3 percent this year.", "3 percent", 3.0, "%"),
        ("Prices rose 2.5 per cent this year.", "2.5 per cent", 2.5, "%"),
        ("Leverage was 5.1 times EBITDA.", "5.1 times", 5.1, "times"),
        ("We opened 13 new stores in the period.", "13 new stores", 13.0, "new stores"),
        ("We served 1,234 customers last week.", "1,234 customers", 1234.0, "customers"),
    ],
)
def test_values(sentence: str, text: str, number: float, unit: str) -> None:
    found = find_values(sentence)
    assert len(found) == 1, found
    v = found[0]
    assert (v.text, v.unit) == (text, unit)
    assert v.number == pytest.approx(number)
    assert sentence[v.start : v.end] == v.text


def test_currency_symbols_and_codes_give_one_unit() -> None:
    for a, b in [("HK$10 million", "HKD 10 million"), ("$3", "USD 3"), ("US$3", "USD3"), ("€5", "EUR 5")]:
        [va], [vb] = find_values(f"Sales were {a} in total."), find_values(f"Sales were {b} in total.")
        assert (va.number, va.unit) == (vb.number, vb.unit), (a, b)


def test_basis_points() -> None:
    found = find_values("Margin expanded 150 basis points, or 40 bps on a constant basis, to 27.1%.")
    assert [v.number for v in found] == [150.0, 40.0, 27.1]
    assert found[0].unit == "basis points" and found[1].unit == "bps" and found[2].unit == "%"


@pytest.mark.parametrize(
    "sentence",
    [
        "In 2023 the board met 12 times in person.",  # "times" counts meetings here, but 2023 is bare
        "Page 12 of the 2024 report.",
        "Item 3.5.1 was listed in 2019.",
        "We have 450 offices.",
    ],
)
def test_no_bare_numbers(sentence: str) -> None:
    assert all(v.unit for v in find_values(sentence))
    assert not any(v.text in {"2023", "2024", "2019", "450", "12", "3.5"} for v in find_values(sentence))


# ---- rules extractor -------------------------------------------------------------------------------
def extract(text: str, **doc: object) -> list[FactDraft]:
    document = Document(text, **doc)  # type: ignore[arg-type]
    result = RuleExtractor().extract(document, chunk_document(document, 180))
    return [f for e in result for f in e.facts]


def test_registry_creates_the_rule_extractor() -> None:
    assert isinstance(create_extractor("rules"), RuleExtractor)


def test_fact_anchored_to_the_sentence_time() -> None:
    facts = extract("In Q2 2024, Globex Corporation opened 13 new stores.", period=Q(2024, 3), subject="Acme")
    assert len(facts) == 1
    f = facts[0]
    assert f.time == Q(2024, 2) and f.time_explicit
    assert f.subject == "Globex Corporation"  # the entity the sentence opens with
    assert f.object == "13 new stores" and f.value == 13.0


def test_fact_without_time_gets_the_document_period_or_date() -> None:
    f = extract("Revenue was $4.1 billion.", period=Q(2024, 3), date=date(2024, 11, 5), subject="Acme")
    assert [(x.time, x.time_explicit, x.subject) for x in f] == [(Q(2024, 3), False, "Acme")]
    assert f[0].value == pytest.approx(4.1e9) and f[0].unit == "USD"
    # no period: the document date; nothing at all: always
    f = extract("Revenue was $4.1 billion.", date=date(2024, 11, 5), subject="Acme")
    assert f[0].time == TimeInterval.day(date(2024, 11, 5))
    f = extract("Revenue was $4.1 billion.", subject="Acme")
    assert f[0].time == TimeInterval.always()


def test_comparison_point_with_a_cue_is_a_fact_with_its_own_figure() -> None:
    facts = extract(
        "Revenue was $4.1 billion, up from $3.9 billion a year ago.", period=Q(2024, 3), subject="Acme"
    )
    assert [(f.time, f.object) for f in facts] == [(Q(2024, 3), "$4.1 billion"), (Q(2023, 3), "$3.9 billion")]
    assert facts[0].value == pytest.approx(4.1e9) and facts[1].value == pytest.approx(3.9e9)
    assert not facts[0].time_explicit and facts[1].time_explicit
    assert {f.text for f in facts} == {"Revenue was $4.1 billion, up from $3.9 billion a year ago."}

    facts = extract(
        "Gross margin was 41.2%, compared with 39.0% in the prior year quarter.", period=Q(2024, 3)
    )
    assert [(f.time, f.object) for f in facts] == [(Q(2024, 3), "41.2%"), (Q(2023, 3), "39.0%")]


def test_comparison_point_without_a_figure_adds_no_fact() -> None:
    # the cue follows the figure: $938 million is this quarter's, and the year-ago point has no figure
    facts = extract("Revenue was $938 million compared to a year ago.", period=Q(2024, 3), subject="Acme")
    assert [(f.time, f.object) for f in facts] == [(Q(2024, 3), "$938 million")]
    facts = extract("Revenue grew 12% versus the prior year quarter.", period=Q(2024, 3), subject="Acme")
    assert [(f.time, f.object) for f in facts] == [(Q(2024, 3), "12%")]


def test_speaker_lines_become_role_facts_and_chatter_is_skipped() -> None:
    text = (
        "Andrew Rees\n--\nPresident and Chief Executive Officer\n"
        "Thank you, operator, and good morning to everyone on the call.\n"
        "Good morning, everyone, and welcome to our third quarter call.\n"
        "Revenue grew 12% to $1.2 billion."
    )
    facts = extract(text, period=Q(2024, 3), subject="Crocs, Inc.")
    roles = [f for f in facts if f.relation == "role"]
    assert [(f.subject, f.object, f.time) for f in roles] == [
        ("Andrew Rees", "President and Chief Executive Officer", Q(2024, 3))
    ]
    assert roles[0].text == "Andrew Rees -- President and Chief Executive Officer of Crocs, Inc."
    others = [f for f in facts if f.relation != "role"]
    assert [f.text for f in others] == ["Revenue grew 12% to $1.2 billion."]
    assert others[0].subject == "Crocs, Inc." and others[0].object == "12%; $1.2 billion"


def test_speaker_rule_needs_a_name() -> None:
    facts = extract(
        "the results\n--\nPresident\nRevenue grew 12% to $1.2 billion.", period=Q(2024, 3), subject="Acme"
    )
    assert not [f for f in facts if f.relation == "role"]


def test_subject_is_the_opening_entity_else_the_document_subject() -> None:
    text = (
        "Borealis Shipping reported revenue of $412 million.\n"
        "Operating margin was 12.5% for the quarter.\n"
        "Demand from large customers such as Cobalt Ridge Mining rose 40%."
    )
    facts = extract(text, period=Q(2024, 3), subject="Asteria Labs")
    subjects = {f.text: f.subject for f in facts}
    assert subjects["Borealis Shipping reported revenue of $412 million."] == "Borealis Shipping"
    assert subjects["Operating margin was 12.5% for the quarter."] == "Asteria Labs"
    # an entity that is not at the start does not take the subject from the document
    assert subjects["Demand from large customers such as Cobalt Ridge Mining rose 40%."] == "Asteria Labs"
    # the document's own name (or alias) opening a sentence is the document subject, in its spelling
    facts = extract(
        "ASTL posted revenue of $5 million.", period=Q(2024, 3), subject="Asteria Labs", aliases=("ASTL",)
    )
    assert facts[0].subject == "Asteria Labs"


def test_uninformative_sentences_give_no_facts() -> None:
    # short, with no figure, time or name; or chatter; or too short to say anything
    text = (
        "Our teams stayed focused on customers.\nThank you all for joining us on the call today.\nShort one."
    )
    assert extract(text, period=Q(2024, 3), subject="Acme") == []
    # the same short sentence with a figure in it is a fact
    assert len(extract("Our teams stayed focused on 40 customers.", period=Q(2024, 3), subject="Acme")) == 1
