"""Recipe loading: the shipped recipes, and errors that name the file and the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune_assets.errors import RecipeError
from finetune_assets.recipes import SHIPPED_DIR, Recipe, load_recipe, load_recipes

GOOD = """\
task: classification
base_model: some-org/some-model
dataset:
  source: data.csv
  labels: [negative, positive]
"""


def write(tmp_path: Path, text: str | bytes, name: str = "my_recipe.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def error_for(path: Path) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert str(path) in message, f"message does not name the recipe file: {message}"
    return message


# --- shipped recipes -----------------------------------------------------------------------------

def test_shipped_recipes_all_load():
    recipes = load_recipes()
    names = [recipe.name for recipe in recipes]
    assert {"tweet_sentiment", "imdb_distilbert"} <= set(names)
    assert names == sorted(names)
    assert all(isinstance(recipe, Recipe) for recipe in recipes)


def test_tweet_sentiment_recipe():
    recipe = load_recipe(SHIPPED_DIR / "tweet_sentiment.yaml")
    assert recipe.name == "tweet_sentiment"
    assert recipe.task == "classification"
    assert recipe.base_model.startswith("package:")
    assert recipe.dataset.source.startswith("package:")
    assert recipe.dataset.encoding == "latin-1"
    assert recipe.dataset.columns == {"text": "text", "label": "sentiment"}
    assert recipe.dataset.labels == ["negative", "positive"]
    assert recipe.dataset.drop_labels == ["neutral"]
    assert recipe.source_file == (SHIPPED_DIR / "tweet_sentiment.yaml").resolve()
    assert recipe.trust_remote_code is False


def test_imdb_distilbert_recipe():
    recipe = load_recipe(SHIPPED_DIR / "imdb_distilbert.yaml")
    assert recipe.name == "imdb_distilbert"
    assert recipe.task == "classification"
    assert recipe.training.max_length == 512
    # a hub id: no package: prefix, no file suffix, not a path
    assert recipe.dataset.source == "stanfordnlp/imdb"
    assert not recipe.dataset.source.startswith(("package:", ".", "/", "~"))
    assert recipe.dataset.hub_split == "train+test"
    assert recipe.method == "full"


def test_minimal_recipe_gets_defaults(tmp_path):
    recipe = load_recipe(write(tmp_path, GOOD))
    assert recipe.name == "my_recipe"
    assert recipe.dataset.encoding == "utf-8"
    assert recipe.method == "full"
    assert recipe.cleaning.strip_html is True
    assert 0 < recipe.splits.validation + recipe.splits.test < 1
    assert recipe.training.epochs > 0


def test_recipe_is_frozen(tmp_path):
    recipe = load_recipe(write(tmp_path, GOOD))
    with pytest.raises(Exception):
        recipe.training.epochs = 99  # type: ignore[misc]


# --- errors name the file and the dotted key -----------------------------------------------------

def test_unknown_top_level_key(tmp_path):
    message = error_for(write(tmp_path, GOOD + "learning_rate: 0.1\n"))
    assert "learning_rate" in message
    assert "unknown key" in message


def test_unknown_nested_key(tmp_path):
    message = error_for(write(tmp_path, GOOD + "training:\n  epocs: 3\n"))
    assert "training.epocs" in message
    assert "unknown key" in message


def test_unknown_key_in_dataset(tmp_path):
    message = error_for(write(tmp_path, GOOD.replace("  source: data.csv", "  source: data.csv\n  sauce: x")))
    assert "dataset.sauce" in message


def test_wrong_type(tmp_path):
    message = error_for(write(tmp_path, GOOD + 'training:\n  epochs: "many"\n'))
    assert "training.epochs" in message
    assert "many" in message


def test_out_of_range_value(tmp_path):
    message = error_for(write(tmp_path, GOOD + "training:\n  batch_size: 0\n"))
    assert "training.batch_size" in message


def test_missing_required_field(tmp_path):
    message = error_for(write(tmp_path, GOOD.replace("base_model: some-org/some-model\n", "")))
    assert "base_model" in message
    assert "missing" in message


def test_missing_nested_required_field(tmp_path):
    text = "task: classification\nbase_model: m\ndataset:\n  labels: [a, b]\n"
    message = error_for(write(tmp_path, text))
    assert "dataset.source" in message
    assert "missing" in message


def test_bad_method_value(tmp_path):
    message = error_for(write(tmp_path, GOOD + "method: magic\n"))
    assert "method" in message
    assert "magic" in message


def test_bad_task_value(tmp_path):
    message = error_for(write(tmp_path, GOOD.replace("task: classification", "task: telepathy")))
    assert "task" in message
    assert "telepathy" in message


@pytest.mark.parametrize("validation, test", [(0.5, 0.5), (0.6, 0.5), (0.9, 0.3)])
def test_split_fractions_must_leave_training_rows(tmp_path, validation, test):
    message = error_for(write(tmp_path, GOOD + f"splits: {{validation: {validation}, test: {test}}}\n"))
    assert "splits" in message
    assert "validation + test" in message


def test_split_fractions_just_below_one_are_fine(tmp_path):
    recipe = load_recipe(write(tmp_path, GOOD + "splits: {validation: 0.4, test: 0.5}\n"))
    assert recipe.splits.validation == 0.4


def test_several_errors_are_all_reported(tmp_path):
    message = error_for(write(tmp_path, GOOD + "method: magic\ntraining:\n  epocs: 3\n"))
    assert "method" in message
    assert "training.epocs" in message


@pytest.mark.parametrize("key", ["name", "source_file"])
def test_reserved_keys(tmp_path, key):
    message = error_for(write(tmp_path, GOOD + f"{key}: other\n"))
    assert f"'{key}'" in message
    assert "not allowed" in message


@pytest.mark.parametrize("text", ["- task: classification\n- base_model: m\n", "just a string\n", "", "42\n"])
def test_file_not_a_mapping(tmp_path, text):
    message = error_for(write(tmp_path, text))
    assert "mapping" in message


def test_invalid_yaml(tmp_path):
    message = error_for(write(tmp_path, GOOD + "training: {epochs: [1, 2\n"))
    assert "YAML" in message


def test_missing_file(tmp_path):
    message = error_for(tmp_path / "nowhere.yaml")
    assert "not found" in message


def test_non_string_top_level_key_is_a_recipe_error(tmp_path):
    # YAML turns `1:` (and `yes:`/`on:`) into non-string keys; that is still a typo in the recipe.
    message = error_for(write(tmp_path, GOOD + "1: one\n"))
    assert "1" in message


def test_non_utf8_recipe_file_is_a_recipe_error(tmp_path):
    message = error_for(write(tmp_path, GOOD.encode() + "description: caf\xe9\n".encode("latin-1")))
    assert "UTF-8" in message or "utf-8" in message


# --- load_recipes --------------------------------------------------------------------------------

def test_load_recipes_from_folder(tmp_path):
    write(tmp_path, GOOD, "zeta.yaml")
    write(tmp_path, GOOD + "method: lora\n", "alpha.yaml")
    (tmp_path / "notes.txt").write_text("not a recipe")
    recipes = load_recipes(tmp_path)
    assert [recipe.name for recipe in recipes] == ["alpha", "zeta"]
    assert recipes[0].method == "lora"
    assert recipes[1].method == "full"
    assert recipes[0].source_file == (tmp_path / "alpha.yaml").resolve()


def test_load_recipes_stops_on_a_bad_file(tmp_path):
    write(tmp_path, GOOD, "good.yaml")
    bad = write(tmp_path, GOOD + "training:\n  epocs: 3\n", "bad.yaml")
    with pytest.raises(RecipeError, match="training.epocs") as info:
        load_recipes(tmp_path)
    assert str(bad) in str(info.value)


def test_load_recipes_empty_folder(tmp_path):
    assert load_recipes(tmp_path) == []
