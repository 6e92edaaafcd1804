"""The Ollama Modelfile of a version: the registered base's tag, the adapter, the prompt template
and the stop token. Pure text, so the web process can show it without loading anything."""

from __future__ import annotations

ADAPTER_DIR = "adapter"
# The product sends the whole rendered prompt (prompts.render_prompt), so the template passes it through.
TEMPLATE = "{{ .Prompt }}"


def ollama_parameters(*, stop: list[str], num_ctx: int) -> dict[str, object]:
    return {"stop": stop, "temperature": 0, "num_ctx": num_ctx}


def render_modelfile(*, base_tag: str, stop: list[str], num_ctx: int, title: str) -> str:
    lines = [
        f"# {title}",
        "# Load: ollama create <name> -f Modelfile (run in this directory; the base tag must be pulled first)",
        f"FROM {base_tag}",
        f"ADAPTER ./{ADAPTER_DIR}",
        f'TEMPLATE """{TEMPLATE}"""',
        "PARAMETER temperature 0",
        f"PARAMETER num_ctx {num_ctx}",
    ]
    lines += [f'PARAMETER stop "{token}"' for token in stop]
    return "\n".join(lines) + "\n"
