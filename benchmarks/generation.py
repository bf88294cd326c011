"""Generation tokens/s: the pipeline's way against the plain ``model.generate`` way, on the same
prompts, with the quality of both.

Why: evaluation, sample answers, self-play and reward scoring all decode, and decoding one token
reads every weight once. The pipeline's way (``finetune_assets/tasks/causal_lm/scoring.generate``)
holds the weights in bf16 where the machine multiplies bf16 natively (else float32), takes prompts
of similar length together, ``generation.batch_size`` of them (default ``eval_batch_size``), and
lets answers that have ended leave the batch between rounds of a few tokens
(``finetune_assets/inference/decoding.py``). The plain way is what evaluation did before: float32
weights under the resolved autocast, batches of ``eval_batch_size`` prompts in row order, each
batch decoded by one ``model.generate`` until its last answer ends.

- ``chatbot_sft``: the recipe's scored test prompts, its decoding (greedy, 32 new tokens, EOS
  stops). Quality: ROUGE-L of each way's answers against the test answers, and the perplexity of the
  test answers with each way's weights; the share of prompts answered identically both ways
  (``exact_answers``) is reported beside them.
- ``paper_summaries``: its test abstracts, its decoding (greedy, 100 new tokens, no repeated
  3-grams). Quality: ROUGE-L of each way's summaries against the references.

``*_pipeline_prompt_share``: the seconds of the prompts' own forward passes (the pipeline's batches,
read into the KV cache as ``finetune_assets/inference/prefill.py`` reads them: the shared beginning
once, the rest in groups of similar length) over the pipeline's whole decoding time. The plain way
reads every prompt padded to its batch's longest, system prompt and all, in one pass as the first
step of ``generate``; its products run at bf16 speed as well (autocast), so reading less is the only
way this part gets shorter.

The model is each recipe's base model (SmolLM2-135M-Instruct, the packaged GGUF copy), or
``--chatbot-model`` (e.g. ``chatbot_sft``'s exported champion). Tokens/s counts the answers' own
tokens (to EOS) over the wall time of decoding them; the sides alternate ``--repeats`` times and
each keeps its fastest run. Tolerance: perplexity within 2 %, ROUGE-L within 0.02 for either recipe.
Identical answers are not a quality figure: bf16 weights round every layer's output differently,
so greedy decoding takes another word at a near-tie and the answer goes on from there. Where bf16
is native (AMD Zen 4, 2026-12-07) a third to a half of the base model's answers changed so, with
perplexity within 0.5 % and ROUGE-L within 0.01; the tolerance first stated here, 0.9 identical
answers, was set on a CPU where both ways decoded in float32.

    .venv/bin/python benchmarks/generation.py --quick   # 16 prompts of each recipe, one run a side
    .venv/bin/python benchmarks/generation.py --repeats 2   # all scored test prompts, 2 runs a side
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import common

TOLERANCE = {"perplexity_change": 0.02, "rouge_l_change": 0.02}


def plain_generate(model, tokenizer, prompts: list[list[int]], batch_size: int) -> list[list[int]]:
    """Before: batches in row order, each decoded by one ``generate`` until its last answer ends."""
    from finetune_assets.inference.decoding import until_stop

    stops = {tokenizer.eos_token_id}
    answers = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer.pad(
            {"input_ids": prompts[start : start + batch_size]}, padding_side="left", return_tensors="pt"
        )
        new = model.generate(**batch)[:, batch["input_ids"].shape[1] :]
        answers += [until_stop(ids, stops) for ids in new.tolist()]
    return answers


def sides(task, location: str, prompts: list[list[int]]) -> tuple:
    """Each side: a callable that decodes every prompt and returns (answers' texts, tokens, seconds),
    and the model it decodes with; the tokenizer; and a callable that times the pipeline side's
    prompt passes alone (seconds)."""
    import torch

    from finetune_assets.inference import batching
    from finetune_assets.inference.generation import apply_generation_settings, generation_batch_size
    from finetune_assets.inference.prefill import prefill
    from finetune_assets.models.tokenizer import load_tokenizer
    from finetune_assets.tasks.causal_lm import chat, scoring

    tokenizer = load_tokenizer(location, task.recipe)
    numerics = task.precision
    plain_model = task.load_model(location).eval()
    fast_model = numerics.for_inference(task.load_model(location).eval())
    chat.with_chat_template(tokenizer)
    for model in (plain_model, fast_model):  # as evaluation and the export decode
        scoring.stop_at_eos(model, tokenizer)
        apply_generation_settings(model, task.recipe)

    def plain():
        with common.stopwatch() as seconds, numerics.inference():
            answers = plain_generate(plain_model, tokenizer, prompts, task.recipe.training.eval_batch_size)
        texts = [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in answers]
        return texts, sum(map(len, answers)), seconds()

    def pipeline():
        with common.stopwatch() as seconds, numerics.inference(), torch.inference_mode():
            answers = scoring.generate(fast_model, tokenizer, prompts, generation_batch_size(task.recipe))
        return [a["text"] for a in answers], sum(a["tokens"] + a["stopped_at_eos"] for a in answers), seconds()

    def prompts_alone():  # the pipeline's batches, each read into the KV cache as decoding reads it
        def read(indices: list[int]) -> list:
            prefill(fast_model, [prompts[i] for i in indices], tokenizer.pad_token_id)
            return indices

        with common.stopwatch() as seconds, numerics.inference():  # a prompt's pass keeps sdpa either way
            batching.map_batches([len(p) for p in prompts], generation_batch_size(task.recipe), read)
        return seconds()

    return {"plain": (plain, plain_model), "pipeline": (pipeline, fast_model)}, tokenizer, prompts_alone


def measure(task, location: str, rows, repeats: int) -> tuple[dict, dict]:
    """Both sides on the prompts of ``rows``, alternating; each side's fastest run and its answers."""
    from finetune_assets.tasks.causal_lm import chat

    prompts = [chat.prompt_before_last_answer(row["input_ids"], row["labels"]) for row in rows]
    ways, tokenizer, prompts_alone = sides(task, location, prompts)
    best: dict = {}
    for _ in range(repeats):
        for name, (run, _model) in ways.items():
            texts, tokens, seconds = run()
            if name not in best or seconds < best[name]["seconds"]:
                best[name] = {"texts": texts, "tokens": tokens, "seconds": seconds}
    best["pipeline"]["prompt_seconds"] = min(prompts_alone() for _ in range(repeats))
    models = {name: model for name, (_run, model) in ways.items()}
    return best, {"models": models, "tokenizer": tokenizer}


def speed_figures(prefix: str, best: dict) -> dict:
    rate = {name: side["tokens"] / side["seconds"] for name, side in best.items()}
    return {
        f"{prefix}_plain_tokens_per_s": round(rate["plain"], 1),
        f"{prefix}_pipeline_tokens_per_s": round(rate["pipeline"], 1),
        f"{prefix}_speedup": round(rate["pipeline"] / rate["plain"], 2),
        f"{prefix}_pipeline_prompt_share": round(best["pipeline"]["prompt_seconds"] / best["pipeline"]["seconds"], 3),
    }


def recipe(name: str, batch_size: int | None):
    """The packaged recipe, with ``generation.batch_size`` set where the command line sets it."""
    loaded = common.load_recipe(name)
    if batch_size is None:
        return loaded
    return loaded.model_copy(update={"generation": loaded.generation.model_copy(update={"batch_size": batch_size})})


def chatbot(model_path: str | None, work: Path, count: int | None, repeats: int, batch_size: int | None) -> dict:
    from finetune_assets.inference.evaluation import scored_rows
    from finetune_assets.tasks import get_task
    from finetune_assets.tasks.causal_lm import scoring

    task = get_task(recipe("chatbot_sft", batch_size))
    splits, base = common.prepared_splits_and_base(task.recipe, work)
    rows = scored_rows(task.recipe, Path(splits))
    rows = rows.select(range(min(count, len(rows)))) if count else rows
    best, made = measure(task, model_path or base, rows, repeats)
    plain, fast = best["plain"]["texts"], best["pipeline"]["texts"]
    collator = task.collator(made["tokenizer"], None)
    rouge = rouge_l(best, list(rows["response"]))
    perplexity = {}
    for name, model in made["models"].items():
        with task.precision.inference():
            sums, counts = scoring.response_nll(model, rows, collator, task.recipe.training.eval_batch_size)
        perplexity[name] = math.exp(sums.sum() / counts.sum())
    return {
        "chatbot_model": model_path or "base model (SmolLM2-135M-Instruct)",
        "chatbot_prompts": len(rows),
        **speed_figures("chatbot", best),
        "chatbot_exact_answers": round(sum(a == b for a, b in zip(plain, fast)) / len(plain), 3),
        "chatbot_perplexity_plain": round(perplexity["plain"], 3),
        "chatbot_perplexity_pipeline": round(perplexity["pipeline"], 3),
        "chatbot_perplexity_change": round(perplexity["pipeline"] / perplexity["plain"] - 1, 4),
        **rouge_figures("chatbot", rouge),
    }


def summaries(work: Path, count: int | None, repeats: int, batch_size: int | None) -> dict:
    from finetune_assets.inference.evaluation import scored_rows
    from finetune_assets.tasks import get_task

    task = get_task(recipe("paper_summaries", batch_size))
    splits, base = common.prepared_splits_and_base(task.recipe, work)
    rows = scored_rows(task.recipe, Path(splits))
    rows = rows.select(range(min(count, len(rows)))) if count else rows
    best, _ = measure(task, base, rows, repeats)
    rouge = rouge_l(best, list(rows["summary"]))
    return {"summaries_documents": len(rows), **speed_figures("summaries", best), **rouge_figures("summaries", rouge)}


def rouge_l(best: dict, references: list[str]) -> dict[str, float]:
    """Each side's (``measure``'s) ROUGE-L against the references."""
    from finetune_assets.metrics import load_metric

    rouge = load_metric("rouge")
    return {
        name: rouge.compute(predictions=side["texts"], references=references)["rougeL"] for name, side in best.items()
    }


def rouge_figures(prefix: str, rouge: dict[str, float]) -> dict:
    return {
        f"{prefix}_rouge_l_plain": round(rouge["plain"], 4),
        f"{prefix}_rouge_l_pipeline": round(rouge["pipeline"], 4),
        f"{prefix}_rouge_l_change": round(rouge["pipeline"] - rouge["plain"], 4),
    }


def main() -> None:
    cli = common.parser(__doc__)
    cli.add_argument("--chatbot-model", help="a model folder to decode chatbot_sft's prompts with (an export)")
    cli.add_argument(
        "--batch-size", type=int, help="generation.batch_size of the pipeline's side (default: the recipes' own)"
    )
    common.add_repeats(cli)
    args = cli.parse_args()
    count, repeats = (16, 1) if args.quick else (None, args.repeats)
    numerics = common.precision(common.load_recipe("chatbot_sft"))
    figures = {
        "cpu": common.cpu_model(),
        "precision": str(numerics),
        "inference_weights": numerics.inference_weights,
        "pipeline_batch_size": args.batch_size or "the recipes' generation.batch_size or eval_batch_size (16)",
    }
    with tempfile.TemporaryDirectory(prefix="generation-") as scratch:
        figures |= chatbot(args.chatbot_model, Path(scratch) / "chatbot", count, repeats, args.batch_size)
        figures |= summaries(Path(scratch) / "summaries", count, repeats, args.batch_size)
    figures["tolerance"] = ", ".join(f"{k} {v}" for k, v in TOLERANCE.items())
    rouge_held = all(
        abs(figures[f"{name}_rouge_l_change"]) <= TOLERANCE["rouge_l_change"] for name in ("chatbot", "summaries")
    )
    perplexity_held = abs(figures["chatbot_perplexity_change"]) <= TOLERANCE["perplexity_change"]
    figures["quality_within_tolerance"] = perplexity_held and rouge_held
    common.print_figures("generation", figures, args.quick)


if __name__ == "__main__":
    main()
