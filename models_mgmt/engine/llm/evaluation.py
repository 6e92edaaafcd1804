"""Scoring by answer options: for each task, the log-likelihood of each fixed option given the
prompt and the answers chosen so far; P(option 1) is the softmax of the two. Deterministic, no
text to parse, and it yields probabilities, so the MLP family's metrics, baselines and backtest
apply unchanged (`engine.evaluation`).

Tasks are answered in order (signal, then risk, then pattern), each conditioned on the options
already chosen -- the same left-to-right path a served model takes when it writes the JSON answer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..labels import TASKS
from .tokens import AnswerCodec

if TYPE_CHECKING:
    import numpy as np  # heavy: loaded on first use, not when the module is imported
    import torch  # heavy: only the training worker loads torch


def _batch(sequences: list[list[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    import torch  # heavy: only the training worker loads torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


def continuation_logliks(
    model: Any, pairs: list[tuple[list[int], list[int]]], *, pad_id: int, batch_size: int, device: Any
) -> list[float]:
    """Sum of log P(continuation tokens | prefix) for each (prefix, continuation) pair."""
    import torch  # heavy: only the training worker loads torch

    out: list[float] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        ids, mask = _batch([p + c for p, c in chunk], pad_id, device)
        # Only the positions that predict a continuation token are scored: a large vocabulary's
        # full logits in float32 would cost batch x length x vocab x 4 bytes.
        rows, cols, targets = [], [], []
        for row, (prefix, continuation) in enumerate(chunk):
            for offset, token in enumerate(continuation):
                rows.append(row)
                cols.append(len(prefix) - 1 + offset)  # logits at position i predict token i + 1
                targets.append(token)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
            chosen = logits[torch.tensor(rows, device=device), torch.tensor(cols, device=device)].float()
            picked = torch.log_softmax(chosen, dim=-1).gather(-1, torch.tensor(targets, device=device)[:, None])[:, 0]
        sums = torch.zeros(len(chunk), dtype=torch.float64).index_add_(0, torch.tensor(rows), picked.double().cpu())
        out.extend(float(v) for v in sums)
    return out


def option_probabilities(
    model: Any, codec: AnswerCodec, prompt_ids: list[list[int]], *, batch_size: int, device: Any
) -> np.ndarray:
    """P(option 1) per example and task, shape (examples, len(TASKS))."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    was_training = model.training
    model.eval()
    prefixes = [list(ids) for ids in prompt_ids]
    probabilities = np.zeros((len(prefixes), len(TASKS)), dtype=np.float64)
    try:
        for k, task in enumerate(TASKS):
            negative, positive = codec.options[task]
            pairs = []
            for prefix in prefixes:
                context = prefix + codec.pieces[k]
                pairs += [(context, negative), (context, positive)]
            scores = continuation_logliks(model, pairs, pad_id=codec.pad_id, batch_size=batch_size, device=device)
            for i in range(len(prefixes)):
                margin = scores[2 * i + 1] - scores[2 * i]
                p = 1.0 / (1.0 + math.exp(-margin)) if margin > -700 else 0.0
                probabilities[i, k] = p
                prefixes[i] = prefixes[i] + codec.pieces[k] + (positive if p > 0.5 else negative)
    finally:
        model.train(was_training)
    return probabilities


def answer_loss(
    model: Any, examples: list[tuple[list[int], list[int]]], *, pad_id: int, batch_size: int, device: Any
) -> float:
    """Mean cross-entropy per answer token (teacher forcing), the validation loss."""
    import torch  # heavy: only the training worker loads torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            loss_sum, tokens = token_loss_sum(model, chunk, pad_id=pad_id, device=device)
            with torch.no_grad():
                total += float(loss_sum)
            count += tokens
    finally:
        model.train(was_training)
    return total / max(count, 1)


def token_loss_sum(
    model: Any, chunk: list[tuple[list[int], list[int]]], *, pad_id: int, device: Any
) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the answer tokens of `chunk`, and how many there were."""
    import torch  # heavy: only the training worker loads torch

    ids, mask = _batch([ids for ids, _ in chunk], pad_id, device)
    labels, _ = _batch([lab for _, lab in chunk], -100, device)
    grad = torch.is_grad_enabled() and model.training
    targets = labels[:, 1:]
    scored = targets != -100  # the answer tokens; logits at position i predict token i + 1
    with torch.set_grad_enabled(grad):
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1][scored].float(), targets[scored], reduction="sum")
    return loss, int(scored.sum())
