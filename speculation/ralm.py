"""Iterative retrieval-augmented generation (RaLM): the baseline loop and its speculative twin.

Every ``config.stride`` new tokens the model is given a fresh document: the query is the text of
the last ``query_tokens`` tokens of prompt plus output, the document is the retriever's top-1,
and the step's prompt is ``encode(doc + "\\n\\n" + prompt)`` followed by the tokens generated so
far. ``baseline`` retrieves for real at every step.

``speculative`` takes the document from ``SpeculativeRetriever.guess`` instead, and after a
scheduler-chosen number of steps verifies their queries in one batched search. At the first
step whose guess was wrong it rolls back (drops that step's tokens and everything after) and
redoes the step with the true document. Each step's prompt is a function of (document, tokens
so far) only, and greedy decoding is deterministic, so by induction over steps the output is
token for token, and document for document, that of ``baseline``.

With ``asynchronous=True`` the verification runs on a worker thread while the main thread keeps
generating the next speculative steps; the worker is polled after every step, so a mismatch is
acted on as soon as it is known. faiss and torch release the GIL, so the overlap is real; give
each one thread (``HFGenerator(threads=1)``, ``DenseRetriever(threads=1)``) on a small machine.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

from .base import Hit, Retriever
from .generator import HFGenerator, TokenGenerator
from .ralmspec import SpeculativeRetriever

__all__ = ["HFGenerator", "RalmConfig", "RalmResult", "TokenGenerator", "baseline", "speculative"]


@dataclass(frozen=True)
class RalmConfig:
    """``stride``: tokens generated per retrieval; ``query_tokens``: tokens a query is made of."""

    stride: int = 4
    query_tokens: int = 32
    max_new_tokens: int = 64

    def __post_init__(self) -> None:
        if self.stride < 1 or self.query_tokens < 1 or self.max_new_tokens < 0:
            raise ValueError("stride and query_tokens must be at least 1, max_new_tokens at least 0")


@dataclass(frozen=True)
class RalmResult:
    """Generated tokens, the document of each step, and what it cost (wall clock)."""

    tokens: tuple[int, ...]
    docs: tuple[int, ...]  # the top-1 document id of each step
    retrievals: int  # real retrieval calls; a batched verification counts once
    seconds: float
    speculated: int = 0  # steps generated with a speculated document, rolled back ones included
    rollbacks: int = 0  # wrong guesses whose later steps were thrown away
    batches: tuple[int, ...] = ()  # queries in each verification
    salvaged: int = 0  # wrong guesses whose redo wrote the same tokens: later steps kept


class _Request:
    """What both loops share: queries and step prompts as functions of the tokens so far."""

    def __init__(self, generator: TokenGenerator, retriever: Retriever, prompt: str, config: RalmConfig):
        self.generator = generator
        self.retriever = retriever
        self.prompt = prompt
        self.config = config
        self.prompt_ids = generator.encode(prompt)
        self._prefixes: dict[int, list[int]] = {}

    def query(self, tokens: list[int]) -> str:
        return self.generator.decode((self.prompt_ids + tokens)[-self.config.query_tokens :])

    def done(self, tokens: list[int], ended: bool) -> bool:
        return ended or len(tokens) >= self.config.max_new_tokens

    def step(self, doc_id: int, tokens: list[int]) -> tuple[list[int], bool]:
        """The step's new tokens, and whether generation ended early (end of sequence)."""
        prefix = self._prefixes.get(doc_id)
        if prefix is None:
            text = self.retriever.text(doc_id) + "\n\n" + self.prompt
            prefix = self._prefixes[doc_id] = self.generator.encode(text)
        n = min(self.config.stride, self.config.max_new_tokens - len(tokens))
        new = self.generator.greedy(prefix + tokens, n)
        return new, len(new) < n


def baseline(generator: TokenGenerator, retriever: Retriever, prompt: str, config: RalmConfig) -> RalmResult:
    """Generate with a real top-1 retrieval before every ``config.stride`` tokens."""
    start = time.perf_counter()
    req = _Request(generator, retriever, prompt, config)
    tokens: list[int] = []
    docs: list[int] = []
    ended = False
    while not req.done(tokens, ended):
        hit = retriever.search([req.query(tokens)], 1)[0][0]
        new, ended = req.step(hit.id, tokens)
        docs.append(hit.id)
        tokens += new
    return RalmResult(tuple(tokens), tuple(docs), len(docs), time.perf_counter() - start)


@dataclass
class _Step:
    start: int  # tokens before this step
    query: str
    doc: int
    ended: bool
    verified: bool
    in_flight: bool = False


@dataclass
class _Flight:
    future: Future[list[Hit]]
    steps: list[int]  # indices into the step list, in order


@dataclass
class _Run:
    """The state of one speculative request."""

    req: _Request
    spec: SpeculativeRetriever
    tokens: list[int] = field(default_factory=list)
    steps: list[_Step] = field(default_factory=list)
    retrievals: int = 0
    speculated: int = 0
    rollbacks: int = 0
    salvaged: int = 0
    batches: list[int] = field(default_factory=list)

    def finished(self) -> bool:
        return self.req.done(self.tokens, bool(self.steps) and self.steps[-1].ended)

    def steps_left(self) -> int:
        """Steps still to generate, as far as the token budget says (end of sequence may come first)."""
        if self.finished():
            return 0
        return -(-(self.req.config.max_new_tokens - len(self.tokens)) // self.req.config.stride)

    def waiting(self) -> list[int]:
        return [i for i, s in enumerate(self.steps) if not s.verified and not s.in_flight]

    def speculate_step(self, real: bool = False) -> None:
        """One step on a guessed document (on a real retrieval's when ``real``)."""
        begin = time.perf_counter()
        query = self.req.query(self.tokens)
        guess = self.spec.guess(query, real=real)
        guessed = time.perf_counter()
        new, ended = self.req.step(guess.hit.id, self.tokens)
        generation = time.perf_counter() - guessed
        if guess.exact:
            self.retrievals += 1
            self.spec.scheduler.record_step(generation)
        else:
            self.speculated += 1
            self.spec.scheduler.record_step(generation, guessed - begin)
        self.steps.append(_Step(len(self.tokens), query, guess.hit.id, ended, verified=guess.exact))
        self.tokens += new

    def launch(self, executor: Executor | None) -> _Flight:
        batch = self.waiting()
        queries = [self.steps[i].query for i in batch]
        for i in batch:
            self.steps[i].in_flight = True
        self.retrievals += 1
        self.batches.append(len(batch))
        if executor is not None:
            return _Flight(executor.submit(self.spec.verify, queries), batch)
        done: Future[list[Hit]] = Future()
        done.set_result(self.spec.verify(queries))
        return _Flight(done, batch)

    def settle(self, flight: _Flight) -> None:
        """Accept the verified prefix; at the first wrong guess, redo that step with the true
        document and roll back whatever followed it, unless the redo wrote the same tokens.

        The scheduler is told how many guesses in a row held before a rollback: a wrong guess
        whose redo kept the later steps cost one step's generation, not a rollback, and counts
        as right there (the scheduler prices rollbacks).
        """
        truths = flight.future.result()
        accepted = 0
        for i, truth in zip(flight.steps, truths, strict=True):
            step = self.steps[i]
            step.in_flight = False
            if step.doc != truth.id and not self._redo(i, truth):
                self.spec.scheduler.record_outcome(accepted, accepted + 1)
                return  # the later steps of this flight are gone
            step.verified = True
            accepted += 1
        self.spec.scheduler.record_outcome(accepted, accepted)

    def _redo(self, i: int, truth: Hit) -> bool:
        """Step ``i`` again with the true document. When it writes exactly the tokens the wrong
        document did, the state after it is unchanged, so every later step is kept (True);
        otherwise they are rolled back (False).

        A step's tokens are a function of its document and the tokens before it, so equal
        tokens mean each later step saw the prompt the baseline would have shown it, up to its
        own document, which its own verification still checks.
        """
        step = self.steps[i]
        end = self.steps[i + 1].start if i + 1 < len(self.steps) else len(self.tokens)
        new, ended = self.req.step(truth.id, self.tokens[: step.start])
        if new == self.tokens[step.start : end] and ended == step.ended:
            step.doc, step.verified = truth.id, True
            self.salvaged += 1
            return True
        del self.steps[i:]
        del self.tokens[step.start :]
        self.rollbacks += 1
        self.steps.append(_Step(step.start, step.query, truth.id, ended, verified=True))
        self.tokens += new
        return False


def speculative(
    generator: TokenGenerator,
    speculative_retriever: SpeculativeRetriever,
    prompt: str,
    config: RalmConfig,
    asynchronous: bool = True,
    executor: Executor | None = None,
) -> RalmResult:
    """``baseline``'s output, generated on speculated documents verified in batches.

    Starts a new request on ``speculative_retriever`` (its cache is reset). With
    ``asynchronous``, verifications run on ``executor`` (a one-thread pool made for the call
    when none is given) while the next steps are generated; at most one is in flight, and at
    most a stride of steps is generated ahead of it. When the scheduler's stride is 0
    (speculation does not pay for this retriever), pending steps are verified and the next step
    retrieves for real, as the baseline does.
    """
    start = time.perf_counter()
    spec = speculative_retriever
    spec.reset()
    run = _Run(_Request(generator, spec.retriever, prompt, config), spec)
    owned = ThreadPoolExecutor(max_workers=1) if asynchronous and executor is None else None
    pool = (executor or owned) if asynchronous else None
    flight: _Flight | None = None
    stride: int | None = None  # chosen at a round's start, kept until a launch or a settle
    with owned if owned is not None else nullcontext():
        while True:
            finished = run.finished()
            waiting = len(run.waiting())
            if stride is None or not waiting:
                # Once a round: planning to the request's end is a dynamic programme (0.1-0.6 ms).
                stride = spec.scheduler.stride(asynchronous, remaining=waiting + run.steps_left())
            due = finished or waiting >= max(stride, 1)
            if flight is not None and (pool is None or due or stride == 0 or flight.future.done()):
                run.settle(flight)
                flight, stride = None, None
            elif flight is None and waiting and due:
                flight, stride = run.launch(pool), None
            elif not finished:
                run.speculate_step(real=stride == 0)
            else:
                break
    seconds = time.perf_counter() - start
    spec.scheduler.record_request(seconds, len(run.steps), run.speculated)
    return RalmResult(
        tokens=tuple(run.tokens),
        docs=tuple(s.doc for s in run.steps),
        retrievals=run.retrievals,
        seconds=seconds,
        speculated=run.speculated,
        rollbacks=run.rollbacks,
        batches=tuple(run.batches),
        salvaged=run.salvaged,
    )
