"""Rollback as Dagster sees it: a ``<recipe>_rollback`` job for each recipe that publishes its champion.

Its run config names the export to return to (``to``: a fingerprint; empty: the previous champion) and
why; the job moves the champion, the MLflow alias and the history
(:mod:`finetune_assets.publishing.rollback`), recording the run's ``user`` tag (else the OS user) and
the run id as who did it. The same as ``python -m finetune_assets.rollback``.
"""

import getpass

from dagster import Config, OpExecutionContext, job, op
from pydantic import Field

from finetune_assets.recipes import Recipe


class RollbackConfig(Config):
    reason: str = Field(description="Why the champion is rolled back; recorded in the history.")
    to: str = Field("", description="The export's fingerprint to return to; empty: the previous champion.")


def rollback_job(recipe: Recipe):
    """The recipe's rollback job (one op)."""

    @op(name=f"{recipe.name}_rollback_champion", required_resource_keys={"artifacts", "mlflow"})
    def roll_back(context: OpExecutionContext, config: RollbackConfig) -> None:
        from finetune_assets.publishing.rollback import rollback

        who = f"{context.run.tags.get('user') or getpass.getuser()} (dagster run {context.run_id})"
        entry = rollback(
            recipe,
            context.resources.artifacts.base,
            config.reason,
            who,
            config.to,
            context.resources.mlflow.tracking_uri,
        )
        context.log.info(f"{recipe.name}: champion is {entry['fingerprint']} again (was {entry['champion']})")

    @job(
        name=f"{recipe.name}_rollback",
        description=f"Move recipe {recipe.name}'s champion (current, champion.json, the MLflow alias) back to "
        "an earlier export of its promotion history, recording who and why.",
    )
    def _rollback():
        roll_back()

    return _rollback
