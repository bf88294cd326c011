"""Preference tuning (DPO, KTO through TRL) on tiny real models: the data forms, cleaning with
receipts, the length-bias check, grouped splits, the loss mask of a DPO batch, the reference model
under LoRA, and DPO (QLoRA: LoRA on a 4-bit base) and KTO recipes trained end to end through Dagster."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import NO_QUALITY_GATES
from tiny_models import ZEPHYR_TEMPLATE, tiny_llama, tiny_llama_tokenizer

from finetune_assets.checks.data import length_bias
from finetune_assets.data.cleaning import clean
from finetune_assets.data.splitting import split_rows
from finetune_assets.errors import DataError
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.recipes import load_recipe
from finetune_assets.tasks import get_task
from finetune_assets.tasks.causal_lm import chat

CANONICAL = ["prompt", "chosen", "rejected", "system", "history", "paired"]
QUESTION, GOOD, BAD = "What is 2 plus 2?", "It is 4.", "It is 5."


def preference_task(folder: Path, base: str = "base", **settings):
    recipe = {"task": "preference", "base_model": base, "dataset": {"source": "pairs.jsonl"}, **settings}
    (folder / "pairs.yaml").write_text(yaml.safe_dump(recipe))
    if base == "base":
        (folder / "base").mkdir(exist_ok=True)
    return get_task(load_recipe(folder / "pairs.yaml"))


def canonical(rows: list[dict], task) -> pd.DataFrame:
    return clean(pd.DataFrame(rows), task).rows[CANONICAL]


def said(role: str, text: str) -> dict:
    return {"role": role, "content": text}


FORMS = {
    "explicit text": {"prompt": QUESTION, "chosen": GOOD, "rejected": BAD},
    "explicit messages": {
        "prompt": [said("user", QUESTION)],
        "chosen": [said("assistant", GOOD)],
        "rejected": [said("assistant", BAD)],
    },
    "implicit messages": {
        "chosen": [said("user", QUESTION), said("assistant", GOOD)],
        "rejected": [said("user", QUESTION), said("assistant", BAD)],
    },
    "UltraFeedback binarized": {
        "prompt": QUESTION,
        "chosen": [said("user", QUESTION), said("assistant", GOOD)],
        "rejected": [said("user", QUESTION), said("assistant", BAD)],
        "score_chosen": 9.0,
        "score_rejected": 2.0,
    },
    "Anthropic HH": {
        "chosen": f"\n\nHuman: {QUESTION}\n\nAssistant: {GOOD}",
        "rejected": f"\n\nHuman: {QUESTION}\n\nAssistant: {BAD}",
    },
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_each_pair_form_reads_into_the_same_canonical_rows(form, tmp_path):
    task = preference_task(tmp_path)
    expected = canonical([FORMS["explicit text"]], task)
    assert expected.iloc[0].to_dict() == {
        "prompt": QUESTION,
        "chosen": GOOD,
        "rejected": BAD,
        "system": "",
        "history": "[]",
        "paired": True,
    }
    pd.testing.assert_frame_equal(canonical([FORMS[form]], task), expected)


def test_earlier_turns_and_a_system_message_are_read_alike_from_messages_and_transcripts(tmp_path):
    task = preference_task(tmp_path)
    earlier = [said("user", "Hi"), said("assistant", "Hello!")]
    messages = {
        "chosen": [said("system", "Be brief."), *earlier, said("user", QUESTION), said("assistant", GOOD)],
        "rejected": [said("system", "Be brief."), *earlier, said("user", QUESTION), said("assistant", BAD)],
    }
    transcript = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: {q}\n\nAssistant: {a}"
    hh = {"chosen": transcript.format(q=QUESTION, a=GOOD), "rejected": transcript.format(q=QUESTION, a=BAD)}
    from_messages, from_hh = canonical([messages], task).iloc[0], canonical([hh], task).iloc[0]
    assert json.loads(from_messages["history"]) == json.loads(from_hh["history"]) == earlier
    assert (from_messages["system"], from_hh["system"]) == ("Be brief.", "")
    assert from_messages["prompt"] == from_hh["prompt"] == QUESTION
    assert (from_hh["chosen"], from_hh["rejected"]) == (GOOD, BAD)


def test_kto_rows_and_mapped_columns_read_into_the_same_canonical_columns(tmp_path):
    task = preference_task(tmp_path)
    kto = canonical(
        [
            {"prompt": QUESTION, "completion": GOOD, "label": True},
            {"prompt": [said("user", QUESTION)], "completion": [said("assistant", BAD)], "label": "false"},
        ],
        task,
    )
    assert kto[["chosen", "rejected", "paired"]].values.tolist() == [[GOOD, "", False], ["", BAD, False]]
    assert list(kto["prompt"]) == [QUESTION, QUESTION]
    mapped = preference_task(
        tmp_path, dataset={"source": "pairs.jsonl", "columns": {"chosen": "better", "rejected": "worse"}}
    )
    rows = canonical([{"prompt": QUESTION, "better": GOOD, "worse": BAD}], mapped)
    assert rows.iloc[0][["chosen", "rejected"]].tolist() == [GOOD, BAD]


def test_implicit_plain_texts_split_at_the_last_shared_word(tmp_path):
    rows = canonical(
        [{"chosen": "Name a colour. Blue.", "rejected": "Name a colour. A dog."}], preference_task(tmp_path)
    )
    assert rows.iloc[0][["prompt", "chosen", "rejected"]].tolist() == ["Name a colour.", "Blue.", "A dog."]


def test_cleaning_drops_pairs_that_teach_no_preference_counted_by_reason(tmp_path):
    task = preference_task(tmp_path)
    rows = [
        {"prompt": QUESTION, "chosen": GOOD, "rejected": BAD},
        {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "hi"},  # the same answer, ignoring case and punctuation
        {"prompt": "Say bye.", "chosen": "", "rejected": "Bye."},
        {"prompt": "Say yes.", "chosen": "Yes.", "rejected": "  "},
    ]
    cleaned = clean(pd.DataFrame(rows), task)
    assert list(cleaned.rows["prompt"]) == [QUESTION]
    counts = {reason: n for reason, n in cleaned.counts().items() if n}
    assert counts == {"chosen equals rejected": 1, "empty chosen": 1, "empty rejected": 1}
    from finetune_assets.data.validation import schema_failures

    assert schema_failures(task.schema(), cleaned.rows).empty
    broken = cleaned.rows.assign(rejected=cleaned.rows["chosen"])
    assert not schema_failures(task.schema(), broken).empty, "the schema refuses a pair with one answer twice"


@pytest.mark.parametrize(
    ("record", "field", "said_about_it"),
    [
        ({"prompt": QUESTION, "completion": GOOD, "label": "maybe"}, "label", "true (desirable) or false"),
        (
            {"prompt": QUESTION, "chosen": [{"role": "robot", "content": "x"}], "rejected": BAD},
            "chosen",
            "role 'robot'",
        ),
        ({"prompt": QUESTION, "chosen": {"a": 1}, "rejected": BAD}, "chosen", "neither a text nor a list"),
        ({"chosen": "\n\nHuman: A\n\nAssistant: B", "rejected": "\n\nHuman: C\n\nAssistant: D"}, "chosen", "2 turn(s)"),
    ],
)
def test_a_bad_record_is_named_by_source_record_and_field(tmp_path, record, field, said_about_it):
    good = {"prompt": "Hi", "completion": "Hello", "label": True} if "completion" in record else FORMS["explicit text"]
    with pytest.raises(DataError) as raised:
        clean(pd.DataFrame([good, record]), preference_task(tmp_path))
    message = str(raised.value)
    assert message.startswith(f"pairs.jsonl: record 2, field '{field}'") and said_about_it in message, message


def test_length_bias_warns_when_the_chosen_answer_is_nearly_always_the_longer(tmp_path):
    recipe = preference_task(tmp_path).recipe
    path = tmp_path / "rows.parquet"

    def judged(chosen: list[str], rejected: list[str]):
        pd.DataFrame({"chosen": chosen, "rejected": rejected, "paired": True}).to_parquet(path)
        return length_bias(recipe, ArtifactRef(str(path), "fp"))

    assert not judged(["a long answer"] * 4, ["short"] * 4).passed
    mixed = judged(["a long answer", "short", "a long answer", "short"], ["short", "a long answer"] * 2)
    assert mixed.passed and mixed.figures["chosen_longer_share"] == 0.5


def test_every_pair_of_one_prompt_lands_in_one_split(tmp_path):
    task = preference_task(tmp_path, splits={"validation": 0.2, "test": 0.2})
    rows = pd.DataFrame(
        [{"prompt": f"Question {i % 10}?", "chosen": f"Answer {i}.", "rejected": f"No {i}."} for i in range(40)]
    )
    cleaned = clean(rows, task).rows
    splits = split_rows(cleaned, task.recipe, None, task.split_groups(cleaned))
    owners = {}
    for name, part in splits.items():
        for prompt in part["prompt"]:
            assert owners.setdefault(prompt, name) == name, f"{prompt} in {owners[prompt]} and {name}"
    assert len(owners) == 10 and all(len(part) for part in splits.values())


def preference_trainer(task, model_dir: Path, tokenizer, out: Path, adapter=None):
    """TRL's trainer built through the family's hooks, as the training process builds it."""
    from datasets import Dataset

    from finetune_assets.training.trainer import training_arguments

    pairs = [FORMS["explicit text"], {"prompt": "Say hi.", "chosen": "Hi there!", "rejected": "Go away."}]
    rows = Dataset.from_pandas(clean(pd.DataFrame(pairs), task).rows, preserve_index=False)
    args = training_arguments(task, out, 1)
    model = task.load_model(str(model_dir))
    options = task.trainer_options(tokenizer, model, (rows, rows), adapter)
    return task.trainer_class()(model=model, args=args, processing_class=tokenizer, **options)


def template_models(smollm_model: Path, folder: Path):
    """(model folder, tokenizer): the tiny Llama with SmolLM2's template, and one with Zephyr's."""
    from transformers import AutoTokenizer

    zephyr = tiny_llama_tokenizer(ZEPHYR_TEMPLATE)
    return [(smollm_model, AutoTokenizer.from_pretrained(smollm_model)), (tiny_llama(folder, zephyr), zephyr)]


def test_a_dpo_batch_puts_loss_on_the_answers_only_under_two_chat_templates(tmp_path, tiny_llama):
    for model_dir, tokenizer in template_models(tiny_llama, tmp_path / "zephyr"):
        task = preference_task(tmp_path, str(model_dir), training={"max_length": 64})
        trainer = preference_trainer(task, model_dir, tokenizer, tmp_path / "out")
        batch = trainer.data_collator([trainer.train_dataset[0]])
        prompt = chat.prompt_ids(tokenizer, chat.conversation(QUESTION))
        rows = zip(batch["input_ids"].tolist(), batch["completion_mask"].tolist(), batch["attention_mask"].tolist())
        for (ids, mask, attended), answer in zip(rows, (GOOD, BAD)):
            assert ids[: len(prompt)] == prompt and not any(mask[: len(prompt)]), "no loss on the prompt"
            scored = [token for token, on in zip(ids, mask) if on]
            assert scored == ids[len(prompt) : sum(attended)], "every token after the prompt carries loss, no pad"
            text = tokenizer.decode(scored)
            assert text.strip().startswith(answer) and tokenizer.eos_token in text, text


def test_under_lora_the_reference_is_the_base_with_the_adapter_off(tmp_path, tiny_llama):
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    task = preference_task(tmp_path, str(tiny_llama), method="lora", training={"max_length": 64})
    adapter = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    trainer = preference_trainer(task, tiny_llama, tokenizer, tmp_path / "out", adapter)
    model = trainer.model.eval()
    assert trainer.ref_model is None and list(model.peft_config) == ["default"], "no second model, no adapter copy"
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_()  # an adapter that has learnt something: on, it changes the answers
    batch = trainer.data_collator([trainer.train_dataset[0]])
    reference = torch.cat(trainer.compute_ref_log_probs(model, batch))
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    expected, adapted = (sequence_logps(m, batch) for m in (base, model))
    # float32 sums over the tokens, in another order: 1e-3 apart on -75 on an AMD Zen 4 (AVX-512)
    assert torch.allclose(reference, expected, rtol=1e-4, atol=1e-4), "the reference scores as the untouched base"
    assert not torch.allclose(adapted, expected, atol=1e-2), "with the adapter on, the model differs"


def test_orpo_trains_with_no_reference_model(tmp_path, tiny_llama):
    from transformers import AutoTokenizer

    settings = {"max_length": 64, "batch_size": 2, "epochs": 3, "learning_rate": 1e-2, "logging_steps": 1}
    task = preference_task(tmp_path, str(tiny_llama), preference={"method": "orpo"}, training=settings)
    trainer = preference_trainer(task, tiny_llama, AutoTokenizer.from_pretrained(tiny_llama), tmp_path / "out")
    assert type(trainer).__name__ == "ORPOTrainer" and getattr(trainer, "ref_model", None) is None
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert len(losses) == 3 and losses[-1] < losses[0], losses


def test_preference_settings_belong_to_their_method_and_task(tmp_path):
    from finetune_assets.errors import RecipeError

    with pytest.raises(RecipeError, match="loss_type and label_smoothing are dpo settings"):
        preference_task(tmp_path, preference={"method": "kto", "loss_type": "ipo"})
    with pytest.raises(RecipeError, match="desirable_weight and undesirable_weight are kto settings"):
        preference_task(tmp_path, preference={"method": "dpo", "undesirable_weight": 2.0})
    with pytest.raises(RecipeError, match="preference: is a setting of task: preference"):
        preference_task(tmp_path, task="instruction", preference={"beta": 0.5})


def test_dpo_refuses_unpaired_rows_and_kto_splits_pairs(tmp_path):
    from datasets import Dataset

    from finetune_assets.tasks.preference import trainers

    rows = [FORMS["explicit text"], {"prompt": "Say hi.", "completion": "Hi!", "label": True}]
    task = preference_task(tmp_path)
    mixed = pd.concat([canonical([rows[0]], task), canonical([rows[1]], task)], ignore_index=True)
    split = Dataset.from_pandas(mixed, preserve_index=False)
    with pytest.raises(DataError, match=r"preference\.method dpo trains on pairs, and 1 of the 2 train rows"):
        trainers.trl_rows(split, task.recipe, "train")
    kto = preference_task(tmp_path, preference={"method": "kto"})
    examples = trainers.trl_rows(split, kto.recipe, "train")
    assert sorted((e["completion"][0]["content"], e["label"]) for e in examples) == [
        ("Hi!", True),
        (GOOD, True),
        (BAD, False),
    ]


@torch.no_grad()
def sequence_logps(model, batch) -> torch.Tensor:
    """Summed log-probabilities of each sequence's completion tokens (completion_mask)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    tokens = torch.log_softmax(logits.float(), -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    return (tokens * batch["completion_mask"][:, 1:]).sum(-1)


def write_pairs_project(root: Path, base: Path, preference: dict, method: str) -> None:
    """A recipe folder with ``sums.yaml``: 40 prompts, each with a right and a wrong answer."""
    (root / "recipes").mkdir(parents=True)
    rows = [
        {"prompt": f"What is {i} plus {i}?", "chosen": f"It is {2 * i}.", "rejected": "I do not know, sorry."}
        for i in range(40)
    ]
    (root / "recipes" / "sums.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    recipe = {
        "task": "preference",
        "base_model": str(base),
        "dataset": {"source": "sums.jsonl"},
        "preference": preference,
        "splits": {"validation": 0.2, "test": 0.25},
        "checks": {"min_rows_per_split": 5, **NO_QUALITY_GATES},
        "method": method,
        "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "training": {"max_length": 48, "learning_rate": 1e-2, "batch_size": 8, "epochs": 2},
        "generation": {"max_new_tokens": 4},
        "evaluation": {"num_examples": 2},
        "promotion": {"min_test_rows": 5},
    }
    (root / "recipes" / "sums.yaml").write_text(yaml.safe_dump(recipe))


@pytest.mark.parametrize(
    ("preference", "method", "bf16"),
    [
        # LoRA on the 4-bit base, on this machine's device (the CPU here): the LoRA path and more, so
        # plain LoRA is not run again end to end (the reference test above builds its trainer)
        ({"method": "dpo", "beta": 0.1}, "qlora", None),
        # in bf16 on any CPU, as where it is native: the reference scores in the scored models' dtype
        ({"method": "kto", "beta": 0.1}, "full", "1"),
    ],
)
def test_a_preference_recipe_trains_end_to_end_and_reports_preference_accuracy(
    tmp_path, tiny_llama, materialize_recipes, monkeypatch, preference, method, bf16
):
    from finetune_assets.models.precision import CPU_OVERRIDE

    if bf16:
        monkeypatch.setenv(CPU_OVERRIDE, bf16)
    write_pairs_project(tmp_path, tiny_llama, preference, method)
    run = materialize_recipes(tmp_path)
    assert run.result.success, run.logs[-5:]
    model = run.metadata["finetuned_model"]
    assert model["method_trained"].value == method
    if method == "qlora":  # the seven projections of both layers in 4 bits
        assert model["four_bit_layers"].value == 14 and model["four_bit_device"].value.startswith(("cpu", "cuda"))
    report = run.metadata["evaluation_report"]
    if bf16:
        assert report["inference_precision"].value == "bf16 weights"
    tuned, base = report["preference_accuracy"].value, report["baseline_preference_accuracy"].value
    # the starting model's implicit reward against itself is 0 for every answer: it ranks no pair
    assert base == 0.5 and abs(report["baseline_reward_margin"].value) < 1e-4, (base, report["baseline_reward_margin"])
    assert tuned >= 0.8 and report["reward_margin"].value > 0, (tuned, report["reward_margin"])
    assert report["logp_margin"].value > report["baseline_logp_margin"].value, "chosen moved away from rejected"
    assert 0 <= report["likelihood_accuracy"].value <= 1
    assert np.isfinite(report["general_text_perplexity"].value)
    assert "| prompt | chosen | base model | fine-tuned |" in report["side_by_side"].value
    exported = run.metadata["exported_model"]
    checks = {e.asset_check_key.name: e.passed for e in run.result.get_asset_check_evaluations()}
    assert checks["length_bias"], "every chosen answer here is the shorter one: no length bias"
    if method != "full":
        assert checks["merge_verified"] and checks["export_reloads"], checks
    assert Path(exported["path"].value, "model.safetensors").exists()


def greedy_answer(model_dir: Path, question: str, new_tokens: int) -> str:
    """The model's greedy answer to ``question`` under its chat template, by transformers alone (no
    token twice: the tiny random Llama would otherwise say only newlines)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    text = tokenizer.apply_chat_template([said("user", question)], tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = model.generate(
        ids, max_new_tokens=new_tokens, do_sample=False, no_repeat_ngram_size=1, eos_token_id=tokenizer.eos_token_id
    )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


def test_self_play_pairs_the_data_answer_with_the_starting_models_own(tmp_path, tiny_llama):
    """``rejected: starting_model`` on a ``recipe:`` base: clean_dataset asks the champion (an edge
    from its asset), writes its greedy answer as the rejected one (each prompt once), drops the pair
    where it already says the data's answer, and a new champion makes the cleaning stale."""
    from dagster import AssetKey, AssetSelection, DagsterInstance, materialize

    from finetune_assets.defs import build_definitions
    from finetune_assets.promotion import champion

    recipes, artifacts = tmp_path / "recipes", tmp_path / "artifacts"
    recipes.mkdir()
    questions = [f"What is {i} plus {i}?" for i in range(6)]
    own = greedy_answer(tiny_llama, questions[0], 6)
    assert own, "the tiny model says something to the first question"
    rows = [{"question": q, "answer": f"It is {2 * i}."} for i, q in enumerate(questions)]
    rows += [{"question": questions[0], "answer": own}, {"question": questions[1], "answer": "Two times one."}]
    (recipes / "qa.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    sft = {"task": "instruction", "base_model": str(tiny_llama), "dataset": {"source": "qa.jsonl"}}
    (recipes / "sft.yaml").write_text(yaml.safe_dump(sft))
    dpo = {
        "task": "preference",
        "base_model": "recipe:sft",
        "dataset": {"source": "qa.jsonl", "columns": {"prompt": "question", "chosen": "answer"}},
        "preference": {"rejected": "starting_model"},
        "generation": {"max_new_tokens": 6, "no_repeat_ngram_size": 1},
    }
    (recipes / "dpo.yaml").write_text(yaml.safe_dump(dpo))
    exports = champion.exports_dir(artifacts, "sft")
    exports.mkdir(parents=True)
    with champion.locked(exports):
        champion.write(exports, ArtifactRef(str(tiny_llama), "aaaa"))

    from finetune_assets.pipeline.chain import CHAIN

    follows, starts = (load_recipe(recipes / f"{name}.yaml") for name in ("dpo", "sft"))
    assert {"base_model", "generation", "preference.rejected"} <= set(CHAIN["clean_dataset"].sections(follows))
    assert CHAIN["clean_dataset"].sections(starts) == ("task", "dataset", "cleaning"), "no model, no generation"
    assert "preference" in CHAIN["finetuned_model"].sections(follows)
    assert "preference" not in CHAIN["finetuned_model"].sections(starts), "other families train free of it"
    defs = build_definitions([recipes], str(artifacts))
    graph = defs.resolve_asset_graph()
    followers = {
        key for key in graph.get_all_asset_keys() if AssetKey(["sft", "exported_model"]) in graph.get(key).parent_keys
    }
    assert followers == {AssetKey(["dpo", "clean_dataset"])}, "self-play's cleaning is the first stage using the base"

    def clean_dpo():
        instance = DagsterInstance.ephemeral()
        result = materialize(
            [*defs.assets, *defs.asset_checks],
            selection=AssetSelection.assets(AssetKey(["dpo", "raw_dataset"]), AssetKey(["dpo", "clean_dataset"])),
            resources=defs.resources,
            instance=instance,
        )
        event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "clean_dataset")
        return event.materialization.metadata, [entry.user_message for entry in instance.all_logs(result.run_id)]

    metadata, logs = clean_dpo()
    assert "sft champion aaaa" in metadata["base_champion"].value
    assert metadata["dropped_chosen_equals_rejected"].value == 1, "the pair whose answer is the model's own"
    assert any("self-play: the starting model answered 6 of 6 distinct prompts" in line for line in logs), logs
    cleaned = pd.read_parquet(metadata["path"].value)
    assert len(cleaned) == len(rows) - 1
    assert set(cleaned.loc[cleaned["prompt"] == questions[0], "rejected"]) == {own}
    assert cleaned.groupby("prompt")["rejected"].nunique().eq(1).all(), "one answer per prompt, however often asked"

    with champion.locked(exports):
        champion.write(exports, ArtifactRef(str(tiny_llama), "bbbb"))  # a new champion: the rejected answers change
    again, _ = clean_dpo()
    assert again["cache_hit"].value is False and "sft champion bbbb" in again["base_champion"].value


def test_self_play_refuses_data_that_holds_rejected_answers_already(tmp_path):
    task = preference_task(tmp_path, preference={"rejected": "starting_model"})
    with pytest.raises(DataError, match=r"pairs.yaml: preference.rejected: starting_model writes the rejected"):
        clean(pd.DataFrame([{"prompt": QUESTION, "chosen": GOOD, "rejected": BAD}]), task)
    with pytest.raises(DataError, match=r"in a column 'chosen' \(map yours with dataset.columns.chosen\)"):
        clean(pd.DataFrame([{"prompt": QUESTION, "response": GOOD}]), task)
