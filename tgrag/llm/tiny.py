"""A tiny Llama built locally, for tests and benchmarks: nothing is downloaded.

``build_tiny_llama(path)`` trains a byte-level BPE tokenizer with ``tokenizers`` on text made
here, random-initialises a small ``LlamaForCausalLM`` and saves both with ``save_pretrained``,
with a chat template so that chat endpoints (vLLM's included) accept it. Its output is noise, but
it exercises every real code path: tokenisation, batching, stop strings, streaming, usage
counts and, where the backend constrains decoding, JSON-schema output.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

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
    """Write a tiny Llama and its tokenizer to ``path`` (created); returns the folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
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
    tok.train_from_iterator(_corpus(4000, seed), trainer=trainer)
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
    model.save_pretrained(path, safe_serialization=True)
    return path
