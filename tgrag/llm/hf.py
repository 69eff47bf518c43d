"""``transformers:PATH``: a local Hugging Face causal LM folder, run in process with ``transformers``.

Nothing is downloaded (``local_files_only``). Prompts are batched with left padding, sorted by
length so that a batch wastes little on padding, and returned in input order. Decoding is greedy
when ``temperature`` is 0, else sampling with ``top_p`` (and ``seed``, reproducibly). Stop strings
end a sequence early (a stopping criterion checks each step) and the text is cut before the first
one. Chat goes through the tokenizer's chat template.

A JSON schema constrains decoding when the ``xgrammar`` package is installed (a logits processor
masks every token the schema does not allow); without it the prompt asks for JSON and the caller
validates, as with any unconstrained backend.

``torch`` and ``transformers`` are imported when a model is created, not when this module is.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import FinishReason, Generation, GenerationParams, LLMError, Message, Usage

_DTYPES = ("float32", "float16", "bfloat16", "auto")


@dataclass
class _Row:
    """One prompt of a batch: its token ids and, once generated, its reply's."""

    ids: list[int]
    out: list[int] | None = None
    stopped_at: int | None = None  # generated tokens when a stop string ended it


class TransformersLLM:
    """An ``LLM`` over a local causal LM folder (``AutoModelForCausalLM`` + ``AutoTokenizer``)."""

    generative = True

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 8,
        name: str | None = None,
        constrain_json: bool = True,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        folder = Path(path).expanduser()
        if not str(path) or not folder.is_dir():
            raise LLMError(f"transformers backend: no model folder at {str(path)!r}")
        try:
            import torch
            import transformers
        except ImportError as exc:  # pragma: no cover - transformers is in the llm extra
            raise LLMError("the transformers backend needs transformers: pip install 'tgrag[llm]'") from exc
        if threads is not None:
            # Process-wide, so opt-in: on a busy CPU, fewer threads than cores avoid spinning.
            torch.set_num_threads(threads)
        self._torch = torch
        self._transformers = transformers
        self.path = folder
        self.device = device
        self.batch_size = batch_size
        self.name = name or folder.resolve().name
        try:
            self._tok: Any = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self._model: Any = _load_model(
                transformers, folder, dtype if dtype == "auto" else getattr(torch, dtype)
            )
            self._model.to(device)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            line = " ".join(str(exc).split())[:300]
            raise LLMError(f"transformers backend: cannot load a causal LM from {folder}: {line}") from exc
        self._model.eval()
        tok = self._tok
        eos = self._model.generation_config.eos_token_id
        eos_ids = list(eos) if isinstance(eos, (list, tuple)) else [eos] if eos is not None else []
        if tok.eos_token_id is not None:
            eos_ids.append(tok.eos_token_id)
        self._eos = frozenset(int(i) for i in eos_ids)
        # Left padding: every prompt then ends where generation starts, the same column for all rows.
        pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(sorted(self._eos)), 0)
        self._pad = int(pad)
        # One generate at a time: a model shared by server threads is not re-entrant.
        self._lock = threading.Lock()
        self._grammars: dict[str, Any] = {}
        self._grammar_compiler: Any = None
        self._constrain = constrain_json and _xgrammar_available()

    @classmethod
    def from_spec(cls, arg: str, **kwargs: Any) -> TransformersLLM:
        return cls(arg, **kwargs)

    @property
    def constrains_json(self) -> bool:
        """True when a JSON schema constrains decoding (``xgrammar`` installed), not only the prompt."""
        return self._constrain

    # -- the LLM protocol -------------------------------------------------------------------

    def complete(self, prompts: Sequence[str], params: GenerationParams | None = None) -> list[Generation]:
        p = params or GenerationParams()
        texts = [_with_json_instruction(t, p) if not self._constrain else t for t in prompts]
        return self._generate([self._encode(t, special=True) for t in texts], p)

    def chat(
        self, conversations: Sequence[Sequence[Message]], params: GenerationParams | None = None
    ) -> list[Generation]:
        p = params or GenerationParams()
        return self._generate([self._chat_ids(c, p) for c in conversations], p)

    def stream_chat(
        self, messages: Sequence[Message], params: GenerationParams | None = None
    ) -> Iterator[str]:
        p = params or GenerationParams()
        if self._model is None:
            raise LLMError("transformers backend: the model is closed")
        row = _Row(self._chat_ids(messages, p))
        stop = _StopCriterion(self, [row], p.stop, prompt_len=len(row.ids))
        streamer = self._streamer()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock:
                    self._run_generate([row], p, stop, streamer=streamer)
            except BaseException as exc:  # handed to the consumer below, which raises it
                failure.append(exc)
            finally:
                streamer.end()

        worker = threading.Thread(target=run, name="tgrag-hf-stream", daemon=True)
        worker.start()
        emitted = 0
        text = ""
        try:
            for delta in streamer:
                text += delta
                cut = _first_stop(text, p.stop)
                if cut is not None:
                    if cut > emitted:
                        yield text[emitted:cut]
                    emitted = cut
                    stop.cancelled = True  # generation may still be a token behind: end it now
                    break
                # Hold back a tail that may be the start of a stop string still being written.
                safe = len(text) - _stop_prefix_len(text, p.stop)
                if safe > emitted:
                    yield text[emitted:safe]
                    emitted = safe
            else:
                if len(text) > emitted:
                    yield text[emitted:]
        finally:
            stop.cancelled = True  # a consumer that stops early ends the generation too
            worker.join()
        if failure:
            raise self._error(failure[0])

    def close(self) -> None:
        self._model = None
        self._grammars.clear()
        with contextlib.suppress(Exception):  # only a cache hint; never fail a close on it
            if self.device.startswith("cuda"):
                self._torch.cuda.empty_cache()

    def __enter__(self) -> TransformersLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- prompts ----------------------------------------------------------------------------

    def _encode(self, text: str, special: bool) -> list[int]:
        return list(self._tok(text, add_special_tokens=special)["input_ids"])

    def _chat_ids(self, conversation: Sequence[Message], p: GenerationParams) -> list[int]:
        msgs = [{"role": m.role, "content": m.content} for m in conversation]
        if msgs and not self._constrain and p.json_schema is not None:
            last = next((i for i in range(len(msgs) - 1, -1, -1) if msgs[i]["role"] != "assistant"), -1)
            msgs[last] = {**msgs[last], "content": _with_json_instruction(msgs[last]["content"], p)}
        if getattr(self._tok, "chat_template", None):
            text = self._tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            # The template writes its own special tokens (BOS and role markers): add none again.
            return self._encode(str(text), special=False)
        # A base model without a template: a plain transcript, ending where the reply begins.
        plain = "".join(f"{m['role']}: {m['content']}\n" for m in msgs) + "assistant:"
        return self._encode(plain, special=True)

    # -- generation -------------------------------------------------------------------------

    def _generate(self, prompts: list[list[int]], p: GenerationParams) -> list[Generation]:
        if self._model is None:
            raise LLMError("transformers backend: the model is closed")
        rows = [_Row(ids) for ids in prompts]
        # Similar lengths share a batch (less padding); the results go back in input order.
        order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))
        for first in range(0, len(order), self.batch_size):
            batch = [rows[i] for i in order[first : first + self.batch_size]]
            width = max(len(r.ids) for r in batch)
            stop = _StopCriterion(self, batch, p.stop, prompt_len=width)
            try:
                with self._lock:
                    self._run_generate(batch, p, stop)
            except LLMError:
                raise
            except Exception as exc:
                raise self._error(exc) from exc
        return [self._result(r, p) for r in rows]

    def _run_generate(
        self, batch: list[_Row], p: GenerationParams, stop: _StopCriterion, streamer: Any = None
    ) -> None:
        torch = self._torch
        width = max(len(r.ids) for r in batch)
        if not width:
            raise LLMError("transformers backend: an empty prompt (no tokens) cannot be continued")
        input_ids = torch.tensor([[self._pad] * (width - len(r.ids)) + r.ids for r in batch])
        mask = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in batch])
        kwargs: dict[str, Any] = {
            "input_ids": input_ids.to(self.device),
            "attention_mask": mask.to(self.device),
            "max_new_tokens": max(1, p.max_tokens),
            "pad_token_id": self._pad,
            "eos_token_id": sorted(self._eos) or None,
            "stopping_criteria": [stop],
            "streamer": streamer,
        }
        if p.temperature > 0:
            # top_k 0: only top_p narrows the choice, as OpenAI-style parameters mean.
            kwargs.update(do_sample=True, temperature=p.temperature, top_p=p.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if p.json_schema is not None and self._constrain:
            kwargs["logits_processor"] = [_GrammarProcessor(self._grammar(p.json_schema), len(batch))]
        seeded = p.seed is not None and p.temperature > 0
        with self._seeded(p.seed) if seeded else contextlib.nullcontext(), torch.inference_mode():
            out = self._model.generate(**kwargs)
        for i, r in enumerate(batch):
            r.out = [int(t) for t in out[i, width:].tolist()]
            r.stopped_at = stop.stopped_at[i]

    @contextlib.contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        """Sampling from ``seed`` without disturbing the process's own random state."""
        torch = self._torch
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed or 0))
            yield

    def _result(self, row: _Row, p: GenerationParams) -> Generation:
        out = row.out or []
        # Tokens the model really produced: up to its EOS or the step a stop string ended it;
        # what follows is padding of a finished row.
        n = len(out)
        eos_at = next((i for i, t in enumerate(out) if t in self._eos), None)
        if eos_at is not None:
            n = eos_at + 1
        if row.stopped_at is not None:
            n = min(n, row.stopped_at)
        text = self._decode(out[:n])
        cut = _first_stop(text, p.stop)
        finish: FinishReason = "length"
        if cut is not None:
            text, finish = text[:cut], "stop"
        elif eos_at is not None and eos_at < n:
            finish = "stop"
        return Generation(text=text, usage=Usage(len(row.ids), n), finish_reason=finish, model=self.name)

    def _decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True))

    def _streamer(self) -> Any:
        return _make_streamer(self._transformers.TextIteratorStreamer, self._tok, self._eos)

    def _grammar(self, schema: dict[str, Any]) -> Any:
        key = json.dumps(schema, sort_keys=True)
        compiled = self._grammars.get(key)
        if compiled is None:
            import xgrammar as xgr

            if self._grammar_compiler is None:
                vocab = int(self._model.config.vocab_size) if self._model is not None else None
                # The model's own end tokens end the JSON (a chat model's may differ from the tokenizer's).
                info = xgr.TokenizerInfo.from_huggingface(
                    self._tok, vocab_size=vocab, stop_token_ids=sorted(self._eos) or None
                )
                self._grammar_compiler = xgr.GrammarCompiler(info)
            try:
                # Compact JSON: a weak model left free whitespace can fill its budget with newlines.
                compiled = self._grammar_compiler.compile_json_schema(key, any_whitespace=False)
            except Exception as exc:
                raise LLMError(f"transformers backend: cannot compile the JSON schema: {exc}") from exc
            self._grammars[key] = compiled
        return compiled

    def _error(self, exc: BaseException) -> LLMError:
        if isinstance(exc, LLMError):
            return exc
        line = " ".join(str(exc).split())[:300]
        return LLMError(
            f"transformers backend ({self.name}): generation failed: {type(exc).__name__}: {line}"
        )


class _StopCriterion:
    """Ends each row once its text holds a stop string; records after how many generated tokens.

    Returning one flag per row lets ``generate`` finish rows one by one and stop the batch when all
    are done (EOS is handled by ``generate`` itself).
    """

    def __init__(self, llm: TransformersLLM, rows: list[_Row], stops: Sequence[str], prompt_len: int) -> None:
        self._llm = llm
        self._stops = tuple(s for s in stops if s)
        self._prompt_len = prompt_len
        # A stop string completed this step ends in the newest token, so only a tail needs decoding:
        # up to 4 byte-level tokens a character, and a few more for context.
        self._window = 4 * max((len(s) for s in self._stops), default=0) + 4
        self.stopped_at: list[int | None] = [None] * len(rows)
        self.cancelled = False

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        torch = self._llm._torch
        n = input_ids.shape[0]
        done = torch.zeros(n, dtype=torch.bool, device=input_ids.device)
        if self.cancelled:
            return ~done
        if not self._stops:
            return done
        generated = input_ids.shape[1] - self._prompt_len
        for i in range(n):
            if self.stopped_at[i] is not None:
                done[i] = True
                continue
            ids = input_ids[i, max(self._prompt_len, input_ids.shape[1] - self._window) :].tolist()
            if _first_stop(self._llm._decode(ids), self._stops) is not None:
                self.stopped_at[i] = generated
                done[i] = True
        return done


def _make_streamer(base: Any, tok: Any, eos: frozenset[int]) -> Any:
    """A ``TextIteratorStreamer`` whose deltas, joined, are exactly the reply's decoded text.

    The stock streamer decodes piecewise (it restarts after each newline), which some tokenizers
    decode differently from the whole; this one decodes everything generated so far each step and
    sends what is new, holding back a trailing incomplete character.
    """

    class _Streamer(base):
        def __init__(self) -> None:
            super().__init__(tok, skip_prompt=True, timeout=None)
            self._ids: list[int] = []
            self._sent = 0
            self._prompt_seen = False
            self._finished = False

        def put(self, value: Any) -> None:
            if not self._prompt_seen:  # generate() hands over the prompt first
                self._prompt_seen = True
                return
            if self._finished:
                return
            for t in value.reshape(-1).tolist():
                self._ids.append(int(t))
                if int(t) in eos:
                    self._finished = True  # what follows is padding
                    break
            text = str(tok.decode(self._ids, skip_special_tokens=True))
            safe = len(text.rstrip("\ufffd"))
            if safe > self._sent:
                self.on_finalized_text(text[self._sent : safe])
                self._sent = safe

        def end(self) -> None:
            text = str(tok.decode(self._ids, skip_special_tokens=True))
            self.on_finalized_text(text[self._sent :], stream_end=True)
            self._sent = len(text)

    return _Streamer()


class _GrammarProcessor:
    """Masks the logits of each row to the tokens its JSON grammar allows (``xgrammar``).

    Unlike xgrammar's own HF processor, a row that stops for another reason (a stop string, a
    padded finished row) is let go instead of failing an assertion.
    """

    def __init__(self, compiled: Any, batch: int) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self._matchers = [xgr.GrammarMatcher(compiled) for _ in range(batch)]
        self._live = [True] * batch
        self._bitmask = xgr.allocate_token_bitmask(batch, compiled.tokenizer_info.vocab_size)
        self._started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self._started:
            for i, m in enumerate(self._matchers):
                if self._live[i] and not m.is_terminated() and not m.accept_token(int(input_ids[i, -1])):
                    self._live[i] = False
        self._started = True
        rows = [i for i, m in enumerate(self._matchers) if self._live[i] and not m.is_terminated()]
        if not rows:
            return scores
        self._xgr.reset_token_bitmask(self._bitmask)
        for i in rows:
            self._matchers[i].fill_next_token_bitmask(self._bitmask, i)
        on_cpu = scores.device.type == "cpu"
        target = scores if on_cpu else scores.to("cpu")
        self._xgr.apply_token_bitmask_inplace(target, self._bitmask, indices=rows)
        return target if on_cpu else target.to(scores.device)


def _load_model(transformers: Any, folder: Path, dtype: Any) -> Any:
    return transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype)


def _xgrammar_available() -> bool:
    try:
        import xgrammar  # noqa: F401
    except Exception:  # an absent or broken install: fall back to prompting for JSON
        return False
    return True


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [i for s in stops if s and (i := text.find(s)) >= 0]
    return min(found) if found else None


def _stop_prefix_len(text: str, stops: Sequence[str]) -> int:
    """The length of the longest end of ``text`` that a stop string starts with."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if s.startswith(text[-k:]):
                best = k
                break
    return best


def _with_json_instruction(content: str, p: GenerationParams) -> str:
    if p.json_schema is None:
        return content
    schema = json.dumps(p.json_schema, separators=(",", ":"))
    return f"{content}\n\nAnswer with one JSON object only, no prose, following this JSON schema: {schema}"


__all__ = ["TransformersLLM"]
