"""Recipe loading: the shipped recipes, and errors that name the file and the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

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
    with pytest.raises(ValidationError, match="frozen"):
        recipe.training.epochs = 99  # type: ignore[misc]


# --- errors name the file and the dotted key -----------------------------------------------------

# Each case: the recipe's text, and what its error message must say (besides the file, which
# error_for checks).
BAD_RECIPES = [
    pytest.param(GOOD + "learning_rate: 0.1\n", ["learning_rate", "unknown key"], id="unknown_top_level_key"),
    pytest.param(GOOD + "training:\n  epocs: 3\n", ["training.epocs", "unknown key"], id="unknown_nested_key"),
    pytest.param(
        GOOD.replace("  source: data.csv", "  source: data.csv\n  sauce: x"),
        ["dataset.sauce"],
        id="unknown_key_in_dataset",
    ),
    pytest.param(GOOD + 'training:\n  epochs: "many"\n', ["training.epochs", "many"], id="wrong_type"),
    pytest.param(GOOD + "training:\n  batch_size: 0\n", ["training.batch_size"], id="out_of_range_value"),
    pytest.param(
        GOOD.replace("base_model: some-org/some-model\n", ""), ["base_model", "missing"], id="missing_required_field"
    ),
    pytest.param(
        "task: classification\nbase_model: m\ndataset:\n  labels: [a, b]\n",
        ["dataset.source", "missing"],
        id="missing_nested_required_field",
    ),
    pytest.param(GOOD + "method: magic\n", ["method", "magic"], id="bad_method_value"),
    pytest.param(GOOD.replace("task: classification", "task: telepathy"), ["task", "telepathy"], id="bad_task_value"),
    pytest.param(
        GOOD + "method: magic\ntraining:\n  epocs: 3\n",
        ["method", "training.epocs"],
        id="several_errors_are_all_reported",
    ),
    pytest.param(GOOD + "training: {epochs: [1, 2\n", ["YAML"], id="invalid_yaml"),
    # YAML turns `1:` (and `yes:`/`on:`) into non-string keys; that is still a typo in the recipe.
    pytest.param(GOOD + "1: one\n", ["1"], id="non_string_top_level_key"),
]


@pytest.mark.parametrize("text, fragments", BAD_RECIPES)
def test_bad_recipe_error_names_what_is_wrong(tmp_path, text, fragments):
    message = error_for(write(tmp_path, text))
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("validation, test", [(0.5, 0.5), (0.6, 0.5), (0.9, 0.3)])
def test_split_fractions_must_leave_training_rows(tmp_path, validation, test):
    message = error_for(write(tmp_path, GOOD + f"splits: {{validation: {validation}, test: {test}}}\n"))
    assert "splits" in message
    assert "validation + test" in message


def test_split_fractions_just_below_one_are_fine(tmp_path):
    recipe = load_recipe(write(tmp_path, GOOD + "splits: {validation: 0.4, test: 0.5}\n"))
    assert recipe.splits.validation == 0.4


@pytest.mark.parametrize("key", ["name", "source_file"])
def test_reserved_keys(tmp_path, key):
    message = error_for(write(tmp_path, GOOD + f"{key}: other\n"))
    assert f"'{key}'" in message
    assert "not allowed" in message


@pytest.mark.parametrize("text", ["- task: classification\n- base_model: m\n", "just a string\n", "", "42\n"])
def test_file_not_a_mapping(tmp_path, text):
    message = error_for(write(tmp_path, text))
    assert "mapping" in message


def test_missing_file(tmp_path):
    message = error_for(tmp_path / "nowhere.yaml")
    assert "not found" in message


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
    with pytest.raises(RecipeError, match=r"training\.epocs") as info:
        load_recipes(tmp_path)
    assert str(bad) in str(info.value)


def test_load_recipes_empty_folder(tmp_path):
    assert load_recipes(tmp_path) == []
