"""``python -m finetune_assets.publish <recipe> [--mlflow [URI]] [--hub REPO_ID]``: the recipe's current
champion published now, to the targets named here or, without any, to those of its ``publish:``.

For a recipe that had no ``publish:`` when its champion was promoted, or to send a champion to one
more place, without retraining: the same targets as the ``published_model`` step
(:mod:`finetune_assets.publishing.step`), the same tags, and the same lookup by fingerprint, so a
champion already there is reused, not published twice. The recipe is read from the configured
recipe folders (or ``--recipes``), the artifacts from ``$FINETUNE_ARTIFACTS_DIR`` (or
``--artifacts``). Exits 1, saying why, when there is no champion, no target, or a target fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finetune_assets.errors import PromotionError, PublishError, RecipeError
from finetune_assets.pipeline.artifacts import default_artifacts_root
from finetune_assets.recipes import Recipe

ANY_SERVER = "-"  # --mlflow without a URI: the recipe's server, else MLFLOW_TRACKING_URI


class _Said:
    def info(self, message: str) -> None:
        print(message)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    from finetune_assets.pipeline.chain import stages_of
    from finetune_assets.publishing.step import publish_champion, targets_of
    from finetune_assets.recipes import scan

    recipe = next((found for found in scan(*args.recipes).recipes if found.name == args.recipe), None)
    try:
        if recipe is None:
            raise RecipeError(f"{args.recipe}: no recipe of that name loads from the recipe folders")
        named = with_targets(recipe, args)
        root = Path(args.artifacts) if args.artifacts else default_artifacts_root()
        versions = {stage.name: stage.version(recipe) for stage in stages_of(recipe)}
        done = publish_champion(named, root, targets_of(named), _Said(), code_versions=versions)
        if done is None:
            raise PromotionError(f"{recipe.name}: no champion to publish under {root} (no export was promoted yet)")
    except (PromotionError, PublishError, RecipeError) as error:
        print(error, file=sys.stderr)
        return 1
    return 0


def with_targets(recipe: Recipe, args: argparse.Namespace) -> Recipe:
    """The recipe with the targets named on the command line as its ``publish:`` (its own without)."""
    from finetune_assets.recipes.schema import HubTarget, MlflowTarget

    spec = recipe.publish
    if args.mlflow is not None:
        given = None if args.mlflow == ANY_SERVER else args.mlflow
        uri = given or (spec.mlflow.tracking_uri if spec.mlflow else None)
        spec = spec.model_copy(
            update={
                "mlflow": MlflowTarget(
                    tracking_uri=uri, model_name=args.model_name or (spec.mlflow and spec.mlflow.model_name)
                )
            }
        )
    if args.hub:
        spec = spec.model_copy(update={"hub": HubTarget(repo_id=args.hub, private=not args.public)})
    if spec.mlflow is None and spec.hub is None:
        raise RecipeError(
            f"recipe {recipe.name} names no publish target: add --mlflow [URI] or --hub REPO_ID, "
            "or a publish: section to the recipe"
        )
    return recipe.model_copy(update={"publish": spec})


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    cli = argparse.ArgumentParser(prog="python -m finetune_assets.publish", description=__doc__.splitlines()[0])
    cli.add_argument("recipe")
    cli.add_argument(
        "--mlflow",
        nargs="?",
        const=ANY_SERVER,
        metavar="URI",
        help="register it in MLflow at URI (no URI: the recipe's server, else $MLFLOW_TRACKING_URI)",
    )
    cli.add_argument("--model-name", default=None, help="the registered model's name (default: the recipe's)")
    cli.add_argument("--hub", metavar="REPO_ID", help="upload it to this Hugging Face Hub repository")
    cli.add_argument("--public", action="store_true", help="create the Hub repository public (default: private)")
    cli.add_argument("--recipes", action="append", default=[], help="a recipe folder (default: the configured ones)")
    cli.add_argument("--artifacts", default="", help="the artifacts root (default: $FINETUNE_ARTIFACTS_DIR)")
    return cli.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
