"""Prompt formatting for causal LMs: the tokenizer's chat template, or a plain one when it has none.

Training, evaluation and the exported pipeline build a prompt the same way (system message, user
turn, then the assistant header, via ``apply_chat_template``), so the model is asked exactly what it
was taught. In a training example the prompt tokens carry no loss (label -100); the response
tokens and one EOS after them do, so the model learns to answer and then to stop.
"""

from __future__ import annotations

IGNORE = -100  # the label that cross-entropy skips

# For models without a chat template (base models such as GPT-2): plain headers, EOS after answers.
PLAIN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Question:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Answer:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Answer:\n' }}{% endif %}"
)


def with_chat_template(tokenizer):
    """``tokenizer``, given :data:`PLAIN_TEMPLATE` if it has no chat template of its own."""
    if not tokenizer.chat_template:
        tokenizer.chat_template = PLAIN_TEMPLATE
    return tokenizer


def messages(prompt: str, system: str = "") -> list[dict]:
    """The conversation that asks ``prompt``; an empty system message leaves the template's default."""
    turns = [{"role": "system", "content": system}] if system else []
    return turns + [{"role": "user", "content": prompt}]


def prompt_ids(tokenizer, prompt: str, system: str = "") -> list[int]:
    """Token ids of the prompt up to and including the assistant header: where generation starts."""
    encoded = with_chat_template(tokenizer).apply_chat_template(
        messages(prompt, system), add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(encoded["input_ids"])


def encode(tokenizer, prompt: str, response: str, system: str, max_length: int) -> dict:
    """One training example: inputs, labels (-100 on the prompt), ``length`` and ``truncated``.

    When prompt + response exceed ``max_length``, the prompt loses its oldest tokens first (the
    text nearest the answer matters most) but keeps at least half the budget when it needs it;
    the response is cut only when it does not fit in the rest, and only then loses its EOS.
    """
    asked = prompt_ids(tokenizer, prompt, system)
    answer = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    truncated = len(asked) + len(answer) > max_length
    if truncated:
        answer = answer[:max_length - min(len(asked), max_length // 2)]
        asked = asked[len(asked) - (max_length - len(answer)):]
    input_ids = asked + answer
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids),
            "labels": [IGNORE] * len(asked) + answer, "length": len(input_ids), "truncated": truncated}
