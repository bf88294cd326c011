"""llama.cpp itself reading a champion's GGUF files: the same greedy answers as the merged model, and
how fast it generates them against transformers on the same CPU.

Why: ``gguf_verified`` reads the files back with transformers' GGUF loader, which dequantizes them;
the program that serves them (llama.cpp, Ollama) is another reader, with its own tokenizer and
kernels. This script runs llama.cpp (through ``llama-cpp-python``, built from source: see
``docs/gguf.md`` for the build and its time) on the champion export of a recipe with
``publish.gguf``, on the test questions of its evaluation report, prompted through the export's chat
template:

- tokenization: llama.cpp's token ids of each prompt against the export's tokenizer's;
- greedy answers: llama.cpp's generated token ids (temperature 0, top-k 1, no repeat penalty) against
  the merged model's (``generate`` with ``do_sample=False``), up to ``--tokens`` tokens or EOS;
- speed: generated tokens per second, llama.cpp on each file against transformers on the merged
  float32 model, both on this machine's cores; the ratio is the figure.

    .venv/bin/pip install --no-deps llama-cpp-python==0.3.36          # builds llama.cpp (minutes)
    .venv/bin/python benchmarks/gguf_llama_cpp.py --artifacts <root> --recipe chatbot_sft
    .venv/bin/python benchmarks/gguf_llama_cpp.py --quick ...        # 2 questions
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import common


def questions(export_ref, limit: int) -> list[list[dict]]:
    """The evaluation report's test questions, each as a one-turn conversation."""
    report = json.loads(Path(export_ref.lineage["evaluation_report"]["path"]).read_text())
    return [[{"role": "user", "content": sample["text"]}] for sample in report["tuned"]["samples"][:limit]]


def transformers_answers(folder: Path, prompts: list[list[int]], tokens: int) -> tuple[list[list[int]], float]:
    """The merged model's greedy token ids for each prompt, and the generated tokens per second."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    eos, answers, made, seconds = model.generation_config.eos_token_id, [], 0, 0.0
    for prompt in prompts:
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(torch.tensor([prompt]), max_new_tokens=tokens, do_sample=False, eos_token_id=eos)
        seconds += time.perf_counter() - started
        answers.append(out[0, len(prompt) :].tolist())
        made += len(answers[-1])
    return answers, made / seconds


def llama_cpp_answers(
    gguf: Path, texts: list[str], tokens: int, stops: set[int]
) -> tuple[list[list[int]], list[list[int]], float]:
    """llama.cpp's token ids of each prompt text, its greedy answers (ending at a token of ``stops``,
    the export's end-of-answer ids, as ``generate`` ends), and generated tokens per second."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=1024, n_threads=os.cpu_count(), verbose=False)
    prompts, answers, made, seconds = [], [], 0, 0.0
    for text in texts:
        prompt = llm.tokenize(text.encode(), add_bos=False, special=True)
        started, answer = time.perf_counter(), []
        for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0):
            answer.append(token)
            if token in stops or len(answer) == tokens:
                break
        seconds += time.perf_counter() - started
        prompts.append(prompt)
        answers.append(answer)
        made += len(answer)
    return prompts, answers, made / seconds


def main() -> None:
    cli = common.parser(__doc__)
    cli.add_argument("--artifacts", required=True, help="the artifacts root the recipe's champion is under")
    cli.add_argument("--recipe", default="chatbot_sft")
    cli.add_argument("--tokens", type=int, default=32, help="greedy tokens per answer (default 32)")
    args = cli.parse_args()
    from transformers import AutoTokenizer, GenerationConfig

    from finetune_assets.promotion import champion

    ref = champion.read(champion.exports_dir(Path(args.artifacts), args.recipe))
    folder = Path(ref.path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    conversations = questions(ref, 2 if args.quick else 8)
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    prompts = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    expected, hf_speed = transformers_answers(folder, prompts, args.tokens)
    stops = GenerationConfig.from_pretrained(folder).eos_token_id
    stops = set(stops if isinstance(stops, list) else [stops])
    figures = {"questions": len(texts), "answer_tokens_at_most": args.tokens, "transformers_tokens_per_s": hf_speed}
    for gguf in sorted(folder.glob("*.gguf")):
        kind = gguf.stem.rsplit("-", 1)[-1]
        read, answers, speed = llama_cpp_answers(gguf, texts, args.tokens, stops)
        figures[f"{kind}_same_tokenization"] = f"{sum(a == b for a, b in zip(read, prompts))} of {len(texts)}"
        figures[f"{kind}_same_greedy_answers"] = f"{sum(a == b for a, b in zip(answers, expected))} of {len(texts)}"
        figures[f"{kind}_llama_cpp_tokens_per_s"] = speed
        figures[f"{kind}_speed_ratio_llama_cpp_over_transformers"] = speed / hf_speed
    common.print_figures("gguf_llama_cpp", figures, args.quick)


if __name__ == "__main__":
    main()
