"""Reading a batch of prompts into a KV cache before decoding: the beginning every prompt shares once,
the rest in groups of similar length.

Why: a batch padded on the left to its longest prompt computes every pad, and every row computes the
chat template's system prompt and the recipe's instruction again. On two Zen 4 cores the prompts'
own forward pass was 0.38 (``chatbot_sft``) and 0.43 (``paper_summaries``) of the time decoding them
took (``benchmarks/generation.py``), a part no faster decoding step shortens. Here the shared
beginning is read once and copied to every row, and the rest of each prompt, but for its last token,
is read in groups of rows of similar length, each group padded only to its own longest. A prompt
asked several times (a reward-driven rollout samples several answers to each) is read once.

The cache that comes back holds, for every row, the shared beginning, then pads, then the row's own
middle: its attention mask has zeros where the pads are, and positions follow from the mask (as
``generate`` derives them), so every real token has the keys and values it has when its prompt is
read alone. The last token of each prompt is left for ``generate``'s first step, which makes the first
new token from it.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

GROUP_TOKENS = 1024  # a group keeps taking rows until it holds this many (short rows: one group)
GROUP_SPREAD = 0.8  # beyond that, rows join while at least this share of the group's longest


def shared_prefix_length(prompts: list[list[int]]) -> int:
    """Tokens every prompt begins with, leaving each prompt at least its last token."""
    shortest = min(len(prompt) for prompt in prompts)
    length = 0
    while length < shortest - 1 and all(prompt[length] == prompts[0][length] for prompt in prompts):
        length += 1
    return length


def groups(lengths: list[int]) -> list[list[int]]:
    """Row indices in groups of similar length, longest first: a group takes rows until it holds
    :data:`GROUP_TOKENS` (padded), then only rows at least :data:`GROUP_SPREAD` of its longest."""
    order = sorted(range(len(lengths)), key=lambda row: -lengths[row])
    found: list[list[int]] = []
    for row in order:
        group = found[-1] if found else None
        if group and (
            len(group) * lengths[group[0]] < GROUP_TOKENS or lengths[row] >= GROUP_SPREAD * lengths[group[0]]
        ):
            group.append(row)
        else:
            found.append([row])
    return found


def layout(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """``(input_ids, attention_mask, shared, width)``: each row the ``shared`` beginning, pads, its
    middle (``width`` columns for the middle and its pads) and its last token."""
    shared = shared_prefix_length(prompts)
    width = max(len(prompt) for prompt in prompts) - shared - 1
    rows, mask = [], []
    for prompt in prompts:
        pads = shared + width + 1 - len(prompt)
        rows.append([*prompt[:shared], *[pad_id] * pads, *prompt[shared:]])
        mask.append([1] * shared + [0] * pads + [1] * (len(prompt) - shared))
    return torch.tensor(rows, device=device), torch.tensor(mask, device=device), shared, width


@torch.inference_mode()
def prefill(model, prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, DynamicCache | None]:
    """``(input_ids, attention_mask, cache)`` for ``generate`` (:func:`layout`'s rows); the cache holds
    all but the last column (``None`` where every prompt is a single token)."""
    input_ids, attention_mask, shared, width = layout(prompts, pad_id, model.device)
    if shared + width == 0:
        return input_ids, attention_mask, None
    prefix = _read(model, input_ids[:1, :shared], None) if shared else None
    first: dict[tuple, int] = {}  # each distinct prompt's first row: a prompt asked several times is read once
    for row, prompt in enumerate(prompts):
        first.setdefault(tuple(prompt), row)
    readers, parts, order = list(first.values()), [], []
    for group in groups([len(prompts[row]) - shared - 1 for row in readers]):
        rows = [readers[i] for i in group]
        longest = len(prompts[rows[0]]) - shared - 1
        part = _read(model, input_ids[rows, shared + width - longest : -1], prefix, attention_mask[rows, :-1], shared)
        parts.append(_widened(part, parts, len(rows), shared, width))
        order += rows
    position = {row: i for i, row in enumerate(order)}
    restore = torch.tensor([position[first[tuple(prompt)]] for prompt in prompts])
    layers = []
    for pairs in zip(*parts):  # one layer's (keys, values) of every group, in group order
        keys, values = zip(*pairs)
        layers.append((torch.cat(keys)[restore], torch.cat(values)[restore]))
    return input_ids, attention_mask, DynamicCache(ddp_cache_data=layers, config=model.config)


def _read(model, input_ids, prefix: DynamicCache | None, attention_mask=None, shared: int = 0):
    """The KV cache after reading ``input_ids`` on top of ``prefix`` (copied to every row), ``None``
    where there is nothing to read or copy. ``attention_mask`` covers the prefix and the whole width;
    the group reads its last columns."""
    rows, length = input_ids.shape
    if prefix is None and length == 0:
        return None
    copied = (
        [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v, _ in prefix] if prefix is not None else None
    )
    cache = DynamicCache(ddp_cache_data=copied, config=model.config)
    if length == 0:
        return cache
    if attention_mask is None:
        model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
        return cache
    mask = torch.cat([attention_mask[:, :shared], attention_mask[:, attention_mask.shape[1] - length :]], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
    model(
        input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1
    )
    return cache


def _widened(part: DynamicCache | None, parts: list, rows: int, shared: int, width: int) -> list:
    """Per layer, ``part``'s ``(keys, values)`` padded between the shared beginning and the middle to
    the batch's ``width``. A group of one-token prompts without a shared beginning (``part`` ``None``)
    is all pads, shaped as the first group's (groups come longest first, so it is never the first)."""
    if part is None:
        return [tuple(t.new_zeros(rows, *t.shape[1:]) for t in pair) for pair in parts[0]]
    return [tuple(_pad_middle(t, shared, width) for t in (keys, values)) for keys, values, _ in part]


def _pad_middle(tensor: torch.Tensor, shared: int, width: int) -> torch.Tensor:
    batch, heads, length, dim = tensor.shape
    pads = tensor.new_zeros(batch, heads, shared + width - length, dim)
    return torch.cat([tensor[:, :, :shared], pads, tensor[:, :, shared:]], dim=2)
