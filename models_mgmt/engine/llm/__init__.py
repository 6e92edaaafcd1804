"""The `llm-lora` family: LoRA fine-tuning of a local language model on instruction data from bars.

Django-free like the rest of the engine. Modules: `base` (checking a Hugging Face directory),
`prompts` (the prompt and answer format), `data` (examples without look-ahead), `spec`,
`trainer` (transformers + peft loop), `evaluation` (answer options scored by log-likelihood),
`artifact` (adapter, template, Modelfile, manifest), `merge` (adapter folded into the base),
`training` (the entry point a worker calls). Only `trainer`, `evaluation`, `artifact`, `merge` and
`training.run_llm_training` load torch/transformers, and only inside functions.
"""
