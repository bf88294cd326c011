"""The checks on a challenger's lineage, as the Dagster instance recorded them, for the promotion gate.

The gate (:mod:`finetune_assets.promotion.gate`) is plain Python; this module reads, for every
asset check on the assets upstream of a stage (the project's and any a merged project added), the
newest result that evaluated **the very artifact the challenger was made from** (the checked
materialization's data version equals the artifact's fingerprint), and hands the gate the ones
that did not pass as :class:`~finetune_assets.pipeline.facts.FailedCheck` rows. A check with no
result on that data (never run on it, or it raised) counts as failed: nothing unchecked promotes.
"""

from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance
from dagster._core.storage.asset_check_execution_record import COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES

from finetune_assets.checks.declaration import Severity
from finetune_assets.pipeline.facts import FailedCheck

DATA_VERSION_TAG = "dagster/data_version"
HISTORY_LIMIT = 25  # newest results looked at per check; older data rarely matters


def lineage_failures(
    instance: DagsterInstance, check_keys: set[AssetCheckKey], lineage: dict[AssetKey, str]
) -> tuple[FailedCheck, ...]:
    """The checks on ``lineage`` (asset key -> fingerprint) that failed or have no result on that data."""
    versions: dict[int, str | None] = {}
    failed = []
    for key in sorted(check_keys, key=lambda k: k.to_user_string()):
        if key.asset_key not in lineage:
            continue
        fingerprint = lineage[key.asset_key]
        evaluation = _evaluation_of(instance, key, fingerprint, versions)
        asset = key.asset_key.path[-1]
        if evaluation is None:
            failed.append(
                FailedCheck(
                    asset,
                    key.name,
                    Severity.ERROR,
                    f"no result on this data ({fingerprint}): it did not run or it raised; run "
                    "the recipe's job, which runs every check",
                )
            )
        elif not evaluation.passed:
            failed.append(
                FailedCheck(asset, key.name, Severity(evaluation.severity.value), evaluation.description or "failed")
            )
    return tuple(failed)


def _evaluation_of(instance: DagsterInstance, key: AssetCheckKey, fingerprint: str, versions: dict):
    """The newest completed evaluation of ``key`` on the materialization whose data version is ``fingerprint``."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=HISTORY_LIMIT, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
    )
    for record in records:
        evaluation = record.event.dagster_event.event_specific_data if record.event else None
        if (
            evaluation is not None
            and _checked_version(instance, key.asset_key, record.run_id, evaluation, versions) == fingerprint
        ):
            return evaluation
    return None


def _checked_version(instance: DagsterInstance, asset: AssetKey, run_id: str, evaluation, versions: dict):
    """The data version of the materialization a check evaluated. Dagster records which one (its
    target), except when it checks an unpartitioned asset in a partitioned run (a sweep variant's run
    with the shared data stages): then it is that asset's materialization in the check's own run."""
    target = getattr(evaluation, "target_materialization_data", None)
    where = target.storage_id if target is not None else (run_id, asset)
    if where not in versions:
        if target is not None:
            found = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=asset, storage_ids=[target.storage_id]), limit=1
            ).records
            versions[where] = found[0].asset_materialization.tags.get(DATA_VERSION_TAG) if found else None
        else:
            made = [
                entry.asset_materialization
                for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
                if entry.asset_materialization.asset_key == asset
            ]
            versions[where] = made[-1].tags.get(DATA_VERSION_TAG) if made else None
    return versions[where]
