"""The quality gates: is the model fit to ship? Each is judged by its stage on its own artifact.

Data checks ask whether the rows are fit to train on; these ask whether the model is fit to ship.
Each judge reads what the stage already wrote (the Trainer's ``log_history.json``, the evaluation's
``report.json`` and figures) and the recipe's ``checks:`` thresholds, and returns an
:class:`~finetune_assets.checks.declaration.Outcome` whose description says what was compared, what a
failure means and what to do. Judging is cheap and needs no model, so it runs on every run, cached
artifact or not, and a changed threshold is judged again without retraining:

- ``finetuned_model/loss_decreased`` (WARN): the training loss fell;
- ``evaluation_report/beats_base_model`` (ERROR): the tuned model beats its untuned base;
- ``evaluation_report/beats_majority_class`` (ERROR, classification): it beats always answering the
  most common label;
- ``evaluation_report/no_overfitting`` (WARN): validation loss did not rise while training loss fell,
  nor end far above it;
- ``evaluation_report/forgetting`` (WARN, instruction): perplexity on general text did not rise far
  above the base model's.

The export's checks (``merge_verified``, ``export_reloads``, and ``gguf_verified`` with
``publish.gguf``) need a model loaded: the export stage
computes them (:mod:`finetune_assets.export`) and records the outcome with its artifact, which
:func:`recorded` hands on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from finetune_assets.checks.declaration import Check, JudgedBy, Outcome, Severity, always, has_labels
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.pipeline.stage_names import EVALUATION_REPORT, EXPORTED_MODEL, FINETUNED_MODEL
from finetune_assets.promotion.gate import Rule
from finetune_assets.recipes import Recipe
from finetune_assets.tasks import get_task


def _verdict(passed: bool, found: str, figures: dict, passing: str, failing: str, advice: str) -> Outcome:
    """An outcome whose description says the verdict (``passing`` or ``failing``), then what was
    ``found``, and on failure what to do."""
    return Outcome(bool(passed), f"{passing}: {found}" if passed else f"{failing}: {found}. {advice}", figures)


def recorded(name: str) -> Callable[[Recipe, ArtifactRef], Outcome]:
    """The outcome the stage computed itself and recorded in the artifact's ``info["checks"]``."""
    return lambda recipe, ref: Outcome.recorded(ref.info["checks"][name])


# --- finetuned_model -----------------------------------------------------------------------------


def loss_decreased(recipe: Recipe, ref: ArtifactRef) -> Outcome:
    """The mean training loss of the last quarter of logged steps against the first quarter's."""
    history = _log_history(Path(ref.path))
    losses = [(row["step"], row["loss"]) for row in history if "loss" in row]
    if len(losses) < 2:
        return Outcome(
            True,
            f"not judged: {len(losses)} training loss(es) logged, too few to compare (the Trainer "
            f"logs every training.logging_steps={recipe.training.logging_steps} steps); lower "
            "training.logging_steps to judge a run this short",
            {"logged_losses": len(losses)},
        )
    first, last = _quarter(losses, 0), _quarter(losses, -1)
    decrease = (first["loss"] - last["loss"]) / first["loss"]
    limit = recipe.checks.min_loss_decrease
    figures = {
        "first_quarter_loss": first["loss"],
        "last_quarter_loss": last["loss"],
        "relative_decrease": decrease,
        "min_loss_decrease": limit,
        "logged_losses": len(losses),
    }
    said = (
        f"training loss {first['loss']:.4f} over steps {first['steps']} and {last['loss']:.4f} over steps "
        f"{last['steps']} ({decrease:+.1%}, limit > {limit:.0%})"
    )
    return _verdict(
        decrease > limit,
        said,
        figures,
        "the training loss fell",
        "the training loss did not fall",
        "The model learned little or nothing from the data: check training.learning_rate (too small to "
        "move the weights, or so large that training diverges), the labels and the data, then train again",
    )


# --- evaluation_report ---------------------------------------------------------------------------


def beats_base_model(recipe: Recipe, ref: ArtifactRef) -> Outcome:
    """The promotion metric of the tuned model against the base model's, on the same test rows."""
    rule, metrics = Rule.of(recipe), ref.info["metrics"]
    tuned, base = rule.figure(recipe, metrics), float(metrics[f"baseline_{rule.metric}"])
    gain = tuned - base if rule.higher_is_better else base - tuned
    limit = recipe.checks.min_gain_over_base
    direction = "higher" if rule.higher_is_better else "lower"
    figures = {
        rule.metric: tuned,
        f"baseline_{rule.metric}": base,
        "gain": gain,
        "min_gain_over_base": limit,
        "test_rows": ref.info.get("test_rows", 0),
    }
    said = (
        f"{rule.metric} {tuned:.4f} fine-tuned against {base:.4f} for the untuned base model on the same "
        f"{figures['test_rows']} test rows ({direction} is better; gain {gain:+.4f}, needed > {limit:g})"
    )
    return _verdict(
        gain > limit,
        said,
        figures,
        "the fine-tuned model beats its base model",
        "the fine-tuned model does not beat its base model",
        "Fine-tuning bought nothing, so it is not exported. Check training.learning_rate and "
        "training.epochs (too little training), the labels and the data; checks.min_gain_over_base sets "
        "the margin",
    )


def beats_majority_class(recipe: Recipe, ref: ArtifactRef) -> Outcome:
    """Test accuracy against always answering the most common test label."""
    report = _report(ref)
    accuracy = float(report["tuned"]["metrics"]["accuracy"])
    majority = float(report["tuned"]["details"]["majority_class_rate"])
    limit = recipe.checks.min_accuracy_over_majority
    figures = {
        "accuracy": accuracy,
        "majority_class_rate": majority,
        "margin": accuracy - majority,
        "min_accuracy_over_majority": limit,
    }
    said = (
        f"test accuracy {accuracy:.4f} against {majority:.4f} for always answering the most common label "
        f"(margin {accuracy - majority:+.4f}, needed > {limit:g})"
    )
    return _verdict(
        accuracy - majority > limit,
        said,
        figures,
        "the model beats the majority class",
        "the model does no better than always answering the most common label",
        "It has learned the label frequencies, not the texts; look at the confusion matrix, balance the "
        "classes (dataset.drop_labels, more rows of the rare labels) or train longer",
    )


def no_overfitting(recipe: Recipe, ref: ArtifactRef) -> Outcome:
    """From the Trainer's log history: validation loss rising above its best while the training loss
    kept falling, or a final validation loss far above the final training loss. With early stopping
    the best checkpoint is the model kept, so the history is judged up to it."""
    history = _log_history(Path(ref.lineage[FINETUNED_MODEL]["path"]))
    evaluations = [(row["step"], row["eval_loss"]) for row in history if "eval_loss" in row]
    losses = [(row["step"], row["loss"]) for row in history if "loss" in row]
    if not evaluations:
        return Outcome(True, "not judged: no validation loss was logged", {})
    spec = recipe.checks
    best_step, best = min(evaluations, key=lambda pair: pair[1])
    if recipe.training.early_stopping_patience:  # the Trainer kept the best checkpoint: that model is judged
        evaluations = [pair for pair in evaluations if pair[0] <= best_step]
        losses = [pair for pair in losses if pair[0] <= best_step]
    final_step, final_validation = evaluations[-1]
    summary = [row["train_loss"] for row in history if "train_loss" in row]
    final_training = _quarter(losses, -1)["loss"] if losses else (summary[-1] if summary else final_validation)
    rise = (final_validation - best) / best if best > 0 else 0.0
    before = [loss for step, loss in losses if step <= best_step]
    after = [loss for step, loss in losses if step > best_step]
    training_fell = bool(before and after) and sum(after) / len(after) < sum(before) / len(before)
    gap = final_validation - final_training
    figures = {
        "final_validation_loss": final_validation,
        "best_validation_loss": best,
        "best_at_step": best_step,
        "validation_loss_rise": rise,
        "final_training_loss": final_training,
        "train_validation_gap": gap,
        "max_validation_loss_rise": spec.max_validation_loss_rise,
        "max_train_validation_gap": spec.max_train_validation_gap,
        "validations": len(evaluations),
    }
    problems = []
    if rise > spec.max_validation_loss_rise and training_fell:
        problems.append(
            f"the validation loss rose from its best {best:.4f} (step {best_step}) to {final_validation:.4f} "
            f"(step {final_step}, {rise:+.1%}, limit {spec.max_validation_loss_rise:.0%}) while the "
            "training loss kept falling"
        )
    if gap > spec.max_train_validation_gap:
        problems.append(
            f"the final validation loss {final_validation:.4f} exceeds the training loss "
            f"{final_training:.4f} by {gap:.4f} (limit {spec.max_train_validation_gap:g})"
        )
    if problems:
        return Outcome(
            False,
            "the model is overfitting: " + "; ".join(problems) + ". It memorises the training rows "
            "instead of learning what generalises: train fewer epochs, set "
            "training.early_stopping_patience (keeps the best checkpoint), add data or weight decay",
            figures,
        )
    return Outcome(
        True,
        f"no sign of overfitting: final validation loss {final_validation:.4f} (best {best:.4f}), "
        f"training loss {final_training:.4f} ({len(evaluations)} validation pass(es))",
        figures,
    )


def forgetting(recipe: Recipe, ref: ArtifactRef) -> Outcome:
    """Perplexity on the shipped general-text probe, tuned against base."""
    metrics = ref.info["metrics"]
    tuned, base = float(metrics["general_text_perplexity"]), float(metrics["baseline_general_text_perplexity"])
    rise = tuned / base - 1
    limit = recipe.checks.max_general_perplexity_rise
    figures = {
        "general_text_perplexity": tuned,
        "baseline_general_text_perplexity": base,
        "rise": rise,
        "max_general_perplexity_rise": limit,
    }
    said = (
        f"perplexity on the shipped general-text probe {tuned:.2f} fine-tuned against {base:.2f} for the base "
        f"model ({rise:+.1%}, limit {limit:+.0%})"
    )
    return _verdict(
        rise <= limit,
        said,
        figures,
        "no sign of catastrophic forgetting",
        "the model has forgotten general language while learning the recipe's data",
        "Lower training.learning_rate or training.epochs, prefer method: lora (or a smaller lora.r), or mix "
        "general text into the data; checks.max_general_perplexity_rise sets the limit",
    )


def _quarter(losses: list[tuple[int, float]], end: int) -> Outcome:
    """The mean loss of the first (``end`` 0) or last (-1) quarter of the logged losses, at least one."""
    size = max(1, len(losses) // 4)
    window = losses[:size] if end == 0 else losses[-size:]
    return {"loss": sum(loss for _, loss in window) / len(window), "steps": f"{window[0][0]}-{window[-1][0]}"}


def _log_history(model_folder: Path) -> list[dict]:
    return json.loads((model_folder / "log_history.json").read_text())


def _report(ref: ArtifactRef) -> Outcome:
    return json.loads(Path(ref.path).read_text())


def has_general_text_probe(recipe: Recipe) -> bool:
    """Whether the recipe's task scores the shipped general-text probe (the instruction family)."""
    return bool(get_task(recipe).general_text_probe)


def loss_shows_learning(recipe: Recipe) -> bool:
    """Whether the recipe's training loss falls as its model learns (not GRPO's): ``loss_decreased``'s condition."""
    return bool(get_task(recipe).loss_shows_learning)


def publishes_gguf(recipe: Recipe) -> bool:
    """Whether the recipe asks for GGUF files (``publish.gguf``): ``gguf_verified``'s condition."""
    return recipe.publish.gguf is not None


WARN, IN_STAGE = always(Severity.WARN), JudgedBy.STAGE

GATES = (
    Check(
        "loss_decreased",
        FINETUNED_MODEL,
        "The training loss fell: the mean of the last quarter of the losses the Trainer logged is below the first "
        "quarter's (by more than checks.min_loss_decrease). Failing means the model learned little or nothing (a "
        "learning rate too small or so large that training diverged, broken labels); look at the loss curve, fix "
        "the recipe or data and train again. Not for task: reward, whose GRPO loss stays near 0 while it "
        "learns (its rewards show it). WARN: shown, and the export is not promoted unless promotion.allow_warnings.",
        loss_decreased,
        WARN,
        loss_shows_learning,
        IN_STAGE,
    ),
    Check(
        "beats_base_model",
        EVALUATION_REPORT,
        "The fine-tuned model beats its untuned base model on the promotion metric (f1_macro, rougeL or perplexity "
        "unless promotion.metric says otherwise), both scored on the same test rows, by more than "
        "checks.min_gain_over_base. Failing means fine-tuning bought nothing: the export does not run (ERROR, "
        "blocking). Look at the learning rate, the epochs, the labels and the loss curve.",
        beats_base_model,
        judged_by=IN_STAGE,
    ),
    Check(
        "beats_majority_class",
        EVALUATION_REPORT,
        "Test accuracy is above the share of the most common test label (by more than "
        "checks.min_accuracy_over_majority): the model does better than always answering that label. Failing "
        "means it learned the label frequencies, not the texts: the export does not run (ERROR, blocking). Look "
        "at the confusion matrix and the class balance.",
        beats_majority_class,
        applies=has_labels,
        judged_by=IN_STAGE,
    ),
    Check(
        "no_overfitting",
        EVALUATION_REPORT,
        "The validation loss did not rise above its best (by more than checks.max_validation_loss_rise) while the "
        "training loss kept falling, and the final validation loss is not far above the training loss "
        "(checks.max_train_validation_gap). Failing means the model memorises its training rows: train fewer "
        "epochs, use training.early_stopping_patience, add data. WARN: shown, and the export is not promoted "
        "unless promotion.allow_warnings.",
        no_overfitting,
        WARN,
        judged_by=IN_STAGE,
    ),
    Check(
        "forgetting",
        EVALUATION_REPORT,
        "The fine-tuned model's perplexity on a small general-text probe shipped with the project "
        "(finetune_assets/probes/general_text.jsonl) is at most checks.max_general_perplexity_rise above the base "
        "model's: tuning on the recipe's data did not cost general language (catastrophic forgetting). Failing: "
        "lower the learning rate or epochs, prefer LoRA. WARN: shown, and the export is not promoted unless "
        "promotion.allow_warnings.",
        forgetting,
        WARN,
        has_general_text_probe,
        IN_STAGE,
    ),
    Check(
        "merge_verified",
        EXPORTED_MODEL,
        "The export, loaded back from disk, is the model that was trained: logits and greedy answers equal to the "
        "adapter on its base (the checkpoint for full fine-tuning) on test rows, and its tokenizer renders them "
        "as training did. Failing means the merge or the saved files changed the model: it is never promoted "
        "(ERROR); check the adapter, its base and the tokenizer, then export again.",
        recorded("merge_verified"),
        judged_by=IN_STAGE,
    ),
    Check(
        "export_reloads",
        EXPORTED_MODEL,
        "The exported folder, loaded through its transformers pipeline as a user would load it, gives the "
        "evaluation report's predictions on a few test rows. Failing means what users get is not what was "
        "evaluated (a changed or missing file, another label mapping or decoding setting): it is never promoted "
        "(ERROR); export again.",
        recorded("export_reloads"),
        judged_by=IN_STAGE,
    ),
    Check(
        "gguf_verified",
        EXPORTED_MODEL,
        "With publish.gguf: the GGUF files written by llama.cpp's converter, read back by transformers' GGUF loader, "
        "give the merged model's greedy answers on 4 test rows (f16 and bf16: all 4, q8_0: at least 3) with logits "
        "within tolerance (1 % of the largest logit for f16, 2 % for bf16, 5 % for q8_0), their tokenizer turns the "
        "rows into training's tokens, and the Ollama Modelfile's TEMPLATE renders test conversations as the chat "
        "template does. Failing means llama.cpp or Ollama users would get another model or prompt: it is never "
        "promoted (ERROR); check the converter and the chat template, then export again.",
        recorded("gguf_verified"),
        applies=publishes_gguf,
        judged_by=IN_STAGE,
    ),
)
