"""A tiny Llama built locally, for tests and benchmarks: nothing is downloaded.

``build_tiny_llama(path)`` trains a byte-level BPE tokenizer with ``tokenizers`` on text made
here, random-initialises a small ``LlamaForCausalLM`` and saves both with ``save_pretrained``,
with a chat template so that chat endpoints (vLLM's included) accept it. Its output is noise, but
it exercises every real code path: tokenisation, batching, stop strings, streaming, usage
counts and, where the backend constrains decoding, JSON-schema output.

``train_tiny_llama(path, texts)`` does the same with the tokenizer trained on ``texts`` and then
trains the model on them for a short while (next-token loss, AdamW, packed sequences). Greedy
decoding of a random model repeats one token forever, which makes any workload that feeds the
output back (iterative retrieval, speculative decoding) degenerate; a briefly trained one writes
text shaped like its corpus.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

# Keep the geometry friendly to every engine: head_dim 64 is supported by vLLM's CPU kernels.
HIDDEN = 128
HEADS = 2
LAYERS = 2
VOCAB = 2048
MAX_POSITIONS = 4096

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_WORDS = (
    "revenue margin guidance quarter year company growth fiscal billion million percent customers "
    "chief executive officer university professor joined left played club team born city launched "
    "product merger renamed acquired reported expects increase decrease compared previous period "
    "what when which who how was were is are did does the a of in on at to for from by with and or"
).split()


def _corpus(lines: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 18))]
        year, q = rng.randint(1990, 2030), rng.randint(1, 4)
        out.append(
            f"{' '.join(words).capitalize()} in Q{q} {year}: ${rng.randint(1, 999)}.{rng.randint(0, 9)} million."
        )
        out.append(
            json.dumps({"subject": words[0], "relation": words[1], "object": words[2], "time": str(year)})
        )
    return out


def build_tiny_llama(path: str | Path, seed: int = 0, layers: int = LAYERS) -> Path:
    """Write a tiny random-init Llama and its tokenizer to ``path`` (created); returns the folder."""
    path = Path(path)
    fast = _tokenizer(_corpus(4000, seed), path)
    _model(fast, seed, layers).save_pretrained(path, safe_serialization=True)
    return path


def train_tiny_llama(
    path: str | Path,
    texts: list[str],
    *,
    steps: int = 600,
    seq_len: int = 128,
    batch_size: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
    layers: int = LAYERS,
) -> Path:
    """Write a tiny Llama trained briefly on ``texts`` (and its tokenizer, trained on them too).

        ``texts`` are joined one per line (no end-of-sequence token, so the model goes on writing
    after a sentence, as an iterative retrieval loop needs) and cut into ``seq_len`` windows; each of
        ``steps`` optimiser steps takes ``batch_size`` windows at random (seeded). A few hundred
        steps take a minute or two on two CPU cores and bring a templated corpus's loss near its floor.
    """
    import torch

    if not texts or steps < 1 or seq_len < 2 or batch_size < 1:
        raise ValueError("train_tiny_llama needs texts, steps >= 1, seq_len >= 2 and batch_size >= 1")
    path = Path(path)
    fast = _tokenizer(texts, path)
    model = _model(fast, seed, layers)
    stream = torch.tensor(fast.encode("\n".join(texts), add_special_tokens=False), dtype=torch.long)
    if len(stream) <= seq_len:
        raise ValueError(f"{len(stream)} tokens of text are too few for windows of {seq_len}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(stream) - seq_len, (batch_size,), generator=gen)
        batch = torch.stack([stream[i : i + seq_len] for i in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    model.config.tgrag_train = {
        "steps": steps,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "loss": round(float(loss.detach()), 4),
    }
    model.save_pretrained(path, safe_serialization=True)
    return path


def _tokenizer(texts: list[str], path: Path) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts``, saved in ``path`` (created)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=specials[4:],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    return fast


def _model(fast: PreTrainedTokenizerFast, seed: int, layers: int) -> LlamaForCausalLM:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=HIDDEN,
        intermediate_size=HIDDEN * 2,
        num_hidden_layers=layers,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = fast.pad_token_id
    return model
