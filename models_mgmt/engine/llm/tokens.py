"""Examples as token ids: prompt ids (no loss) then answer ids (loss), built the same way for
training, validation loss and option scoring.

Pieces and options are tokenized on their own and concatenated, never the joined string, so the
ids of an option are the same whichever text precedes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..labels import TASKS
from .prompts import ANSWER_END, ANSWER_PIECES, OPTIONS, answer_options

IGNORE = -100  # label of a token that carries no loss


@dataclass(frozen=True)
class AnswerCodec:
    """Token ids of the fixed answer pieces and of every option, for one tokenizer."""

    bos: list[int]
    eos: list[int]
    pieces: list[list[int]]  # before each task's option
    end: list[int]
    options: dict[str, tuple[list[int], list[int]]]  # task -> (ids of option 0, ids of option 1)
    pad_id: int

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> AnswerCodec:
        def ids(text: str) -> list[int]:
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])

        if tokenizer.eos_token_id is None:
            raise ValueError("the base model's tokenizer has no end-of-sequence token")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return cls(
            bos=[tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else [],
            eos=[tokenizer.eos_token_id],
            pieces=[ids(piece) for piece in ANSWER_PIECES],
            end=ids(ANSWER_END),
            options={task: (ids(OPTIONS[task][0]), ids(OPTIONS[task][1])) for task in TASKS},
            pad_id=int(pad),
        )

    def answer_ids(self, labels: Any) -> list[int]:
        out: list[int] = []
        for i, (task, option) in enumerate(zip(TASKS, answer_options(labels), strict=True)):
            out += self.pieces[i] + self.options[task][OPTIONS[task].index(option)]
        return out + self.end + self.eos


def encode_prompts(tokenizer: Any, codec: AnswerCodec, prompts: list[str]) -> list[list[int]]:
    encoded = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    return [codec.bos + list(ids) for ids in encoded]


def encode_examples(
    prompt_ids: list[list[int]], codec: AnswerCodec, labels: Any, max_length: int
) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per example; the loss reads the answer tokens only."""
    examples = []
    for ids, row in zip(prompt_ids, labels, strict=True):
        answer = codec.answer_ids(row)
        if len(ids) + len(answer) > max_length:
            raise ValueError(
                f"an example needs {len(ids) + len(answer)} tokens; raise maxSequenceLength "
                f"(now {max_length}) to at least that"
            )
        examples.append((ids + answer, [IGNORE] * len(ids) + answer))
    return examples
