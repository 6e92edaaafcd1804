"""Fold a version's LoRA adapter into its base and write a standalone Hugging Face directory
(safetensors), for an Ollama server that refuses the adapter.

Run as a separate process so the web process never imports torch:

    python -m models_mgmt.engine.llm.merge <base dir> <adapter dir> <output dir>
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def merge_adapter(base_dir: str | Path, adapter_dir: str | Path, output_dir: str | Path) -> list[str]:
    """Write the merged model and the base's tokenizer to `output_dir`; returns the files written."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch  # heavy: merging loads the whole base model
    from peft import PeftModel  # heavy: merging loads the whole base model
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: merging loads the whole base model

    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), local_files_only=True, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir), local_files_only=True).merge_and_unload()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True).save_pretrained(str(out))
    return sorted(p.name for p in out.iterdir() if p.is_file())


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python -m models_mgmt.engine.llm.merge <base dir> <adapter dir> <output dir>")
    for name in merge_adapter(*sys.argv[1:4]):
        print(name)
