"""``llm_judge``: an LLM decides whether a prediction answers the question as the gold answers do.

Any callable from a prompt to a completion will do (the LLM backends of ``tgrag.llm`` provide one);
the metric appears in results only when a judge is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

Judge = Callable[[str], str]

PROMPT = """You grade answers to questions about documents.
Question: {question}
Correct answers (any one is enough): {golds}
Predicted answer: {prediction}
Does the predicted answer mean the same as a correct answer? Reply with one word: yes or no."""


def judge_answer(judge: Judge, question: str, golds: Sequence[str], prediction: str) -> float | None:
    """1.0 for yes, 0.0 for no, None when the judge's reply says neither (counted as missing)."""
    reply = judge(PROMPT.format(question=question, golds=" | ".join(golds), prediction=prediction))
    word = re.search(r"\b(yes|no)\b", reply.lower())
    return None if word is None else float(word.group(1) == "yes")
