"""``finetune_assets.FineTune``: one recipe as a Dagster component, for ``dg`` projects.

A user's own ``dg`` project adds a fine-tuning job without Python::

    dg scaffold defs finetune_assets.FineTune my_model   # writes defs/my_model/defs.yaml

The ``attributes:`` of that ``defs.yaml`` are a recipe: the same keys as a recipe file, validated
by the same schema (:class:`finetune_assets.recipes.Recipe`), plus an optional ``name`` (the asset
key prefix and group; default: the folder's name). ``dg check yaml`` checks them against the
schema's JSON form and names a bad key; loading validates them again with the recipe loader, so a
cross-key rule (``validation + test`` below 1, a sweep's variants) fails with the file and key too.
Relative paths in the recipe (``dataset.source``, ``compute.accelerate_config``) are relative to
the ``defs.yaml``'s folder, as they are to a recipe file's. String values may be Dagster templates
(``{{ env.BASE_MODEL }}``), rendered before the recipe is validated.

The component builds what :func:`finetune_assets.defs.build_definitions` builds for one recipe
file (:func:`~finetune_assets.defs.build.recipe_definitions`) and the shared resources and executor
(:func:`~finetune_assets.defs.build.shared_definitions`, one object per process, so several
components merge). ``dg list components`` finds the type through the
``dagster_dg_cli.registry_modules`` entry point in pyproject.toml, which names the package;
``finetune_assets.FineTune`` is a lazy attribute of it, so importing the package stays light.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dagster import Component, ComponentLoadContext, Definitions, Scaffolder, ScaffoldRequest, scaffold_with
from pydantic import BaseModel, ConfigDict, Field, create_model

from finetune_assets.defs.build import recipe_definitions, shared_definitions
from finetune_assets.errors import RecipeError
from finetune_assets.recipes import SHIPPED_DIR, Recipe
from finetune_assets.recipes.loading import NAME_PATTERN, recipe_from_mapping

# Recipe fields that are not keys of a recipe file: the name comes from the file (here: the
# `name` attribute or the folder), the source file is the defs.yaml, the variant is set by a sweep.
_NOT_KEYS = {"name", "source_file", "variant"}
STARTER = SHIPPED_DIR / "tweet_sentiment.yaml"  # what `dg scaffold defs` writes: the offline quickstart

FineTuneAttributes: type[BaseModel] = create_model(
    "FineTuneAttributes",
    __config__=ConfigDict(extra="forbid"),
    __doc__="A recipe (the keys of a recipe file) and the name of its asset group.",
    name=(
        str | None,
        Field(
            None,
            pattern=f"^{NAME_PATTERN}$",
            description="asset key prefix and group name; default: this defs.yaml's folder name",
        ),
    ),
    **{key: (field.annotation, field) for key, field in Recipe.model_fields.items() if key not in _NOT_KEYS},
)


class FineTuneScaffolder(Scaffolder):
    """Writes a ``defs.yaml`` whose attributes are the shipped quickstart recipe, comments and all:
    a recipe that loads and runs offline, to edit into the user's own."""

    def scaffold(self, request: ScaffoldRequest) -> None:
        if request.scaffold_format != "yaml":
            raise ValueError("finetune_assets.FineTune is configured in YAML only: leave out --format python")
        recipe = STARTER.read_text(encoding="utf-8").splitlines()
        while recipe and recipe[0].startswith("#"):  # the starter's own header: its run command
            recipe.pop(0)
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(
            f"# A fine-tuning recipe: every key of a recipe file goes under attributes (see finetune_assets'\n"
            f"# docs/dagster-project.md). This one is the offline quickstart ({STARTER.stem}); edit it.\n"
            f"# The asset group is this folder's name unless attributes.name says otherwise.\n"
            f"type: {request.type_name}\n\nattributes:\n"
            + "".join(f"  {line}\n" if line.strip() else "\n" for line in recipe),
            encoding="utf-8",
        )


@scaffold_with(FineTuneScaffolder)
@dataclass
class FineTune(Component):
    """One fine-tuning recipe as an asset group: raw data to exported model, with checks and a job."""

    recipe: Recipe

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        return FineTuneAttributes

    @classmethod
    def load(cls, attributes: BaseModel | None, context: ComponentLoadContext) -> FineTune:
        keys = attributes.model_dump(exclude_unset=True) if attributes is not None else {}
        keys = context.resolution_context.at_path("attributes").resolve_value(keys)  # {{ env.X }} templates
        folder = context.path if context.path.is_dir() else context.path.parent
        defs_yaml = folder / "defs.yaml"
        name = keys.pop("name", None) or folder.name
        if not re.fullmatch(NAME_PATTERN, name):
            raise RecipeError(
                f"{defs_yaml}: the folder name {name!r} is not a recipe name (letters, digits and "
                "underscores); rename the folder or set attributes.name"
            )
        return cls(recipe_from_mapping(keys, name, defs_yaml))

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        return Definitions.merge(recipe_definitions(self.recipe), shared_definitions())
