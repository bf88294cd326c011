"""What a run knows beyond the recipe and the upstream artifacts, handed to a stage's ``finish`` step.

The pipeline stays free of Dagster: the Dagster side (:mod:`finetune_assets.defs.assets`) reads the
latest check results of the lineage from the instance and the run's overrides from its run config,
and hands them over as these plain values; a script calling the runner passes none (or its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from finetune_assets.checks.declaration import Severity


@dataclass(frozen=True)
class FailedCheck:
    """A check on an upstream artifact that did not pass on the data the challenger was made from."""

    asset: str  # the stage it checks, e.g. "clean_dataset"
    check: str  # e.g. "class_balance"
    severity: Severity  # a check without a result on this data counts as ERROR
    description: str

    def describe(self) -> str:
        return f"{self.asset}/{self.check} ({self.severity}): {self.description}"


@dataclass(frozen=True)
class RunFacts:
    # None: nobody looked (a plain Python caller); a tuple, possibly empty: what the instance says
    failed_checks: tuple[FailedCheck, ...] | None = None
    overrides: dict = field(default_factory=dict)  # run-config values that changed the recipe for this run
    promote_with_overrides: bool = False  # the run config allows such a run to promote
    upstream: dict = field(default_factory=dict)  # upstream stage name -> its ArtifactRef (set by the runner)
    # the stage's own checks that failed on the artifact it made (set by the runner; the export's
    # merge_verified and export_reloads)
    own_failures: tuple[FailedCheck, ...] = ()
    run_id: str = ""  # the Dagster run ("" for a plain Python caller): published champions are tagged with it
    tracking_uri: str = ""  # the mlflow resource's tracking URI, for the publishing stage ("" when not set)

    def describe_overrides(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in sorted(self.overrides.items()))
