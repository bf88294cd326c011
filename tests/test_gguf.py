"""GGUF files and the Ollama Modelfile of a decoder-only export (``publish.gguf``): written by
llama.cpp's converter, read back by transformers' GGUF loader, and the ``gguf_verified`` check that
catches a corrupted tensor or a wrong chat template, so that such an export is never promoted."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import write_films_recipe
from datasets import Dataset, DatasetDict
from peft import LoraConfig, get_peft_model
from test_merge_check import ROWS, check_evaluations, export, write_project
from tiny_models import LLAMA2_TEMPLATE, ZEPHYR_TEMPLATE

from finetune_assets.errors import RecipeError, TemplateError
from finetune_assets.export import gguf, gguf_check, go_template, llama_cpp, modelfile
from finetune_assets.inference.evaluation import scored_rows
from finetune_assets.models.tokenizer import load_tokenizer
from finetune_assets.recipes import load_recipe
from finetune_assets.recipes.schema import GenerationSpec
from finetune_assets.tasks import get_task
from finetune_assets.tasks.causal_lm.chat import PLAIN_TEMPLATE

GGUF = {"gguf": {"types": ["f16", "q8_0"]}}


@pytest.fixture(scope="module")
def converter():
    """llama.cpp's converter, taken from the pinned llama-cpp-python sdist once (the setup step)."""
    if not llama_cpp.converter_dir().joinpath("convert_hf_to_gguf.py").is_file():
        llama_cpp.fetch()
    return llama_cpp.converter()


@pytest.fixture(scope="module")
def promoted(tmp_path_factory, tiny_llama, materialize_recipes, converter):
    """A whole Dagster run of a tiny LoRA recipe on the tiny Llama with ``publish.gguf``: its export
    (merged model, GGUF files and Modelfile) checked by ``gguf_verified`` before the gate decides."""
    root = tmp_path_factory.mktemp("gguf")
    _write_gguf_project(root, tiny_llama, max_new_tokens=4)
    recipe = load_recipe(root / "recipes" / "sums.yaml")
    return SimpleNamespace(root=root, recipe=recipe, run=materialize_recipes(root))


@pytest.fixture(scope="module")
def exported(promoted):
    """The run's recipe, its export's folder and the test rows its checks probed."""
    metadata = promoted.run.metadata
    rows = scored_rows(promoted.recipe, Path(metadata["tokenized_splits"]["path"].value))
    return promoted.recipe, Path(metadata["exported_model"]["path"].value), rows


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "export"))


def test_a_faithful_gguf_export_passes(promoted):
    evaluation = check_evaluations(promoted.run)["gguf_verified"]
    assert evaluation.passed, evaluation.description
    exported = promoted.run.metadata["exported_model"]
    assert exported["decision"].value == "promoted (first export)"
    assert set(exported["gguf_files"].value) == {"sums-f16.gguf", "sums-q8_0.gguf"}
    folder = Path(exported["path"].value)
    assert {p.name for p in folder.glob("*.gguf")} == {"sums-f16.gguf", "sums-q8_0.gguf"}
    figures = {key.removeprefix("gguf_check_"): value.value for key, value in exported.items()}
    assert figures["f16_same_greedy_answers"] == "4 of 4" and figures["f16_same_tokenization"] == "4 of 4"
    assert int(figures["q8_0_same_greedy_answers"][0]) >= 3
    assert figures["modelfile_template_matches"] == "2 of 2"
    assert figures["f16_logits_max_abs_difference"] < figures["f16_logits_tolerance"]


def test_the_gguf_holds_the_tokenizer_and_chat_template(exported):
    recipe, folder, _ = exported
    from gguf import GGUFReader

    reader = GGUFReader(folder / "sums-q8_0.gguf")
    fields = {name: field.contents() for name, field in reader.fields.items() if name.startswith(("general", "tok"))}
    tokenizer = load_tokenizer(str(folder), recipe)
    assert fields["general.architecture"] == "llama"
    assert fields["tokenizer.chat_template"] == tokenizer.chat_template
    assert len(fields["tokenizer.ggml.tokens"]) == len(tokenizer)
    assert fields["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
    types = {tensor.name: tensor.tensor_type.name for tensor in reader.tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0"


def test_the_modelfile(exported):
    _, folder, _ = exported
    text = (folder / "Modelfile").read_text()
    assert text.startswith("FROM ./sums-q8_0.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert "PARAMETER temperature 0\n" in text and "PARAMETER num_predict 4\n" in text
    turns = [{"role": "user", "content": "Hi"}]
    assert modelfile.render(folder / "Modelfile", turns) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_a_corrupted_tensor_is_caught(exported, tmp_path):
    recipe, folder, rows = exported
    folder = copy_of(folder, tmp_path)
    from gguf import GGUFReader

    reader = GGUFReader(folder / "sums-f16.gguf", "r+")
    tensor = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight")
    tensor.data[...] = np.random.default_rng(0).normal(0, 1, tensor.data.shape).astype(tensor.data.dtype)
    reader.data.flush()
    outcome = gguf_check.verify(get_task(recipe), folder, rows)
    assert not outcome["passed"]
    assert "f16: its logits differ from the merged model's" in outcome["description"]
    assert "q8_0:" not in outcome["description"], "only the corrupted file is blamed"
    assert "It is not promoted" in outcome["description"]


def test_a_wrong_chat_template_in_the_gguf_or_the_modelfile_is_caught(exported, tmp_path):
    recipe, folder, rows = exported
    folder = copy_of(folder, tmp_path)
    template = folder / "chat_template.jinja"
    kept = template.read_text()
    template.write_text(PLAIN_TEMPLATE)
    llama_cpp.convert(folder, folder / "sums-f16.gguf", "f16")  # a GGUF with another chat template
    template.write_text(kept)
    path = folder / "Modelfile"
    path.write_text(path.read_text().replace("<|im_start|>assistant\n", "<|im_start|>assistant "))
    outcome = gguf_check.verify(get_task(recipe), folder, rows)
    assert not outcome["passed"]
    description = outcome["description"]
    assert "f16: the tokenizer in sums-f16.gguf (vocabulary and chat template) turns 4 of 4 test rows" in description
    assert "the Modelfile's TEMPLATE renders a 4-turn conversation differently" in description
    assert outcome["figures"]["modelfile_template_matches"] == "0 of 2"


@pytest.mark.parametrize("template", [None, PLAIN_TEMPLATE, ZEPHYR_TEMPLATE])
def test_the_modelfile_template_renders_as_the_chat_template(smollm_tokenizer, template, tmp_path):
    """SmolLM2's ChatML (with its default system prompt), the plain template, Zephyr's."""
    tokenizer = smollm_tokenizer if template is None else _with_template(smollm_tokenizer, template)
    path = modelfile.write(tmp_path, "m.gguf", tokenizer, GenerationSpec())
    for turns in gguf_check.CONVERSATIONS:
        expected = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        assert modelfile.render(path, turns) == expected


def test_a_template_that_rewrites_turns_gets_no_modelfile(smollm_tokenizer, tmp_path):
    with pytest.raises(TemplateError, match="no Ollama TEMPLATE"):
        modelfile.write(tmp_path, "m.gguf", _with_template(smollm_tokenizer, LLAMA2_TEMPLATE), GenerationSpec())


def test_the_go_template_renderer():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    template = (
        '{{- range $i, $m := .Messages }}\n  {{- if and (eq $i 0) (ne .Role "system") }}D{{ end -}}\n'
        '  {{ if eq .Role "user" "tool" }}[{{ .Content }}]{{ else if not (eq $m.Role "user") }}<{{ .Content }}>'
        "{{ else }}?{{ end }}{{ end }} {{ len $.Messages }}"
    )
    with pytest.raises(ValueError, match="not known"):
        go_template.render(template, messages)  # $m.Role: field access on a variable is not supported
    template = template.replace("$m.Role", ".Role")
    assert go_template.render(template, messages) == "<S>[U] 2"
    assert go_template.render(template, messages[1:]) == "D[U] 1"
    with pytest.raises(ValueError, match="'printf' is not known"):
        go_template.render('{{ printf "%s" .Messages }}', messages)


def test_gguf_needs_a_causal_language_model(tmp_path, tiny_bert):
    recipe = load_recipe(write_films_recipe(tmp_path, base_model=str(tiny_bert), publish=GGUF))
    with pytest.raises(RecipeError, match=r"publish\.gguf needs a decoder-only causal language model"):
        gguf.require_decoder_only(recipe, str(tiny_bert))


def test_a_spoiled_gguf_fails_the_export_and_is_never_promoted(promoted, tiny_llama, materialize_recipes, monkeypatch):
    """After the promoted run: a Modelfile whose TEMPLATE is spoiled (one GGUF type is enough here)."""
    champion = (promoted.root / "artifacts" / "sums" / "exported_model" / "champion.json").read_text()
    real_go_template = modelfile.go_template_of
    monkeypatch.setattr(modelfile, "go_template_of", lambda chat: real_go_template(chat).replace("\n", " ", 1))
    # a new evaluation and export, same training
    _write_gguf_project(promoted.root, tiny_llama, max_new_tokens=6, types=["f16"])
    bad = materialize_recipes(promoted.root)
    failure = next(e for e in bad.result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "sums__exported_model", "the blocking check fails the run"
    evaluation = check_evaluations(bad)["gguf_verified"]
    assert not evaluation.passed and evaluation.severity.value == "ERROR"
    assert "the Modelfile's TEMPLATE renders" in evaluation.description
    decision = bad.metadata["exported_model"]["decision"].value
    assert decision.startswith("not promoted: check exported_model/gguf_verified (ERROR)")
    assert (promoted.root / "artifacts" / "sums" / "exported_model" / "champion.json").read_text() == champion


def _write_gguf_project(root: Path, base: Path, max_new_tokens: int, types=("f16", "q8_0")) -> None:
    write_project(root, base, max_new_tokens)
    path = root / "recipes" / "sums.yaml"
    publish = {"gguf": {"types": list(types)}}
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "publish": publish}))


def _with_template(tokenizer, template: str):
    copied = copy.deepcopy(tokenizer)
    copied.chat_template = template
    return copied


def test_the_chatbot_sft_export_on_smollm2_passes(smollm_copy, tmp_path, converter):
    """The shipped chat recipe's model (SmolLM2-135M-Instruct: grouped-query attention, ChatML with a
    default system prompt), a LoRA adapter on it merged, written as GGUF and verified."""
    shipped = yaml.safe_load((Path(gguf.__file__).parents[1] / "recipes" / "chatbot_sft.yaml").read_text())
    (tmp_path / "chatbot_sft.yaml").write_text(
        # f16 alone: q8_0 is verified on the tiny Llama above; here what matters is this model's shape
        yaml.safe_dump({**shipped, "base_model": str(smollm_copy), "publish": {"gguf": {"types": ["f16"]}}})
    )
    recipe = load_recipe(tmp_path / "chatbot_sft.yaml")
    tokenizer = load_tokenizer(str(smollm_copy), recipe)
    rows = get_task(recipe).tokenize(DatasetDict({"test": Dataset.from_list(ROWS)}), tokenizer)["test"]
    adapted = get_peft_model(
        get_task(recipe).load_model(str(smollm_copy)),
        LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    adapted.save_pretrained(tmp_path / "checkpoint")
    tokenizer.save_pretrained(tmp_path / "checkpoint")
    folder = export(recipe, tmp_path / "checkpoint", tmp_path / "export")
    gguf.write(recipe, folder, load_tokenizer(str(folder), recipe))
    outcome = gguf_check.verify(get_task(recipe), folder, rows)
    assert outcome["passed"], outcome["description"]
    assert outcome["figures"]["f16_same_greedy_answers"] == "4 of 4"
    assert outcome["figures"]["modelfile_template_matches"] == "2 of 2"


def test_the_modelfile_parameters_follow_the_recipes_generation(smollm_tokenizer, tmp_path):
    sampled = GenerationSpec(do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=20)
    text = modelfile.write(tmp_path, "m.gguf", smollm_tokenizer, sampled).read_text()
    assert "PARAMETER temperature 0.7\nPARAMETER top_p 0.9\nPARAMETER num_predict 20\n" in text
    assert "no Ollama equivalent" not in text
    beams = modelfile.write(tmp_path, "m.gguf", smollm_tokenizer, GenerationSpec(num_beams=4)).read_text()
    assert "# num_beams and no_repeat_ngram_size have no Ollama equivalent" in beams


def test_a_missing_converter_names_publish_gguf_and_the_setup_step(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_LLAMA_CPP_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(
        RecipeError, match=r"publish\.gguf needs llama\.cpp's converter .* finetune_assets\.export\.llama_cpp"
    ):
        llama_cpp.converter()
