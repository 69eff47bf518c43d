"""The token-level generator the RaLM loop drives, and a transformers implementation of it."""

from __future__ import annotations

import inspect
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class TokenGenerator(Protocol):
    """Greedy, deterministic continuation of token ids."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        ...

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``."""
        ...

    def greedy(self, prompt_ids: list[int], n: int) -> list[int]:
        """Up to ``n`` new tokens by greedy decoding; fewer when end-of-sequence came (not included)."""
        ...


class HFGenerator:
    """A ``TokenGenerator`` over a local causal LM folder, run with ``transformers`` on CPU.

    Greedy decoding is a plain loop over the model with its KV cache: argmax (first index on
    ties) of the last position, so the same ids always give the same tokens. ``threads`` sets
    torch's intra-op threads, which is process-wide, hence opt-in; with retrieval on another
    thread, 1 avoids oversubscribing a small machine. ``torch`` and ``transformers`` are imported
    here, not when the module is.
    """

    def __init__(self, model_dir: str | Path, *, threads: int | None = None, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads is not None:
            torch.set_num_threads(threads)
        self.model_dir = Path(model_dir)
        self._torch = torch
        self._device = device
        self._tok: Any = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(
            model_dir, local_files_only=True, dtype=torch.float32
        )
        self._model: Any = model.to(device)
        self._model.eval()
        # transformers 5 renamed ``past_key_values`` to ``cache`` (argument and output field).
        params = inspect.signature(self._model.forward).parameters
        self._cache_name = "cache" if "cache" in params else "past_key_values"
        eos = self._model.generation_config.eos_token_id
        ids = list(eos) if isinstance(eos, (list, tuple)) else [] if eos is None else [eos]
        if self._tok.eos_token_id is not None:
            ids.append(self._tok.eos_token_id)
        self.eos_ids = frozenset(int(i) for i in ids)
        self._lock = threading.Lock()  # one forward pass at a time: the model is not re-entrant

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in self._tok.encode(text, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True))

    def greedy(self, prompt_ids: list[int], n: int) -> list[int]:
        if n <= 0 or not prompt_ids:
            return []
        torch = self._torch
        out: list[int] = []
        with self._lock, torch.inference_mode():
            step = self._model(input_ids=torch.tensor([prompt_ids], device=self._device), use_cache=True)
            for i in range(n):
                token = int(step.logits[0, -1].argmax())
                if token in self.eos_ids:
                    break
                out.append(token)
                if i + 1 == n:
                    break
                cache = {self._cache_name: getattr(step, self._cache_name)}
                step = self._model(
                    input_ids=torch.tensor([[token]], device=self._device), use_cache=True, **cache
                )
        return out
