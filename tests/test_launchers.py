"""Where training runs, without running it: the command each launcher builds, the checks before a
launch, which checkpoint is resumed, run-config overrides of ``compute``, and the Kubernetes pod a
recipe asks for (checked against dagster-k8s's own pod builder and the Kubernetes models)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_layout import python

from finetune_assets.defs.resources import RunSettings
from finetune_assets.defs.training import KubernetesTraining
from finetune_assets.errors import RecipeError
from finetune_assets.training import checkpoints
from finetune_assets.training.command import check_splits, training_command

PATHS = dict(
    recipe_file=Path("/a/recipe.json"),
    splits=Path("/a/splits"),
    out=Path("/a/out"),
    checkpoints=Path("/a/ckpt"),
    fingerprint="f00d",
)
TAIL = [
    "-m",
    "finetune_assets.training.run",
    "--recipe",
    "/a/recipe.json",
    "--splits",
    "/a/splits",
    "--out",
    "/a/out",
    "--checkpoints",
    "/a/ckpt",
    "--fingerprint",
    "f00d",
]


def test_each_launcher_starts_the_same_module(make_recipe, tmp_path):
    assert training_command(make_recipe(), **PATHS) == [sys.executable, *TAIL]
    torchrun = make_recipe(compute={"launcher": "torchrun", "processes": 4})
    assert training_command(torchrun, **PATHS) == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=4",
        *TAIL,
    ]
    ray = make_recipe(compute={"launcher": "ray", "ray": {"workers": 3}})
    assert training_command(ray, **PATHS) == [sys.executable, "-m", "finetune_assets.training.ray_job", *TAIL[2:]]
    assert ray.compute.training_processes == 3  # what training.batch_size is split over
    (tmp_path / "fsdp.yaml").write_text("distributed_type: FSDP\n")
    accelerate = make_recipe(compute={"launcher": "accelerate", "accelerate_config": "fsdp.yaml"})
    assert training_command(accelerate, **PATHS) == [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(tmp_path / "fsdp.yaml"),
        *TAIL,
    ]


def test_launcher_settings_that_cannot_work_are_refused(make_recipe):
    with pytest.raises(RecipeError, match=r"compute: .*processes: 2 needs launcher: torchrun"):
        make_recipe(compute={"processes": 2})
    with pytest.raises(RecipeError, match="launcher: accelerate needs accelerate_config"):
        make_recipe(compute={"launcher": "accelerate"})
    missing = make_recipe(compute={"launcher": "accelerate", "accelerate_config": "nowhere.yaml"})
    with pytest.raises(RecipeError, match=r"compute.accelerate_config: .*nowhere.yaml not found"):
        training_command(missing, **PATHS)


def test_the_batch_must_split_evenly_over_the_processes(make_recipe, tmp_path):
    (tmp_path / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "validation", "test"]}))
    recipe = make_recipe(training={"batch_size": 6})
    check_splits(recipe, tmp_path, 3)
    with pytest.raises(RecipeError, match="batch_size 6 does not divide over 4 processes"):
        check_splits(recipe, tmp_path, 4)
    with pytest.raises(RecipeError, match="not a folder of tokenized splits"):
        check_splits(recipe, tmp_path / "nowhere", 1)


def test_run_config_or_ray_moves_training_without_changing_fingerprints(make_recipe):
    from finetune_assets.pipeline.chain import CHAIN

    recipe = make_recipe()
    moved = RunSettings(launcher="torchrun", processes=2).apply(recipe)
    assert (moved.compute.launcher, moved.compute.processes) == ("torchrun", 2)
    assert CHAIN["finetuned_model"].version(moved) == CHAIN["finetuned_model"].version(recipe)
    on_ray = make_recipe(compute={"launcher": "ray", "ray": {"address": "ray://head:10001", "workers": 8}})
    assert CHAIN["finetuned_model"].version(on_ray) == CHAIN["finetuned_model"].version(recipe)
    with pytest.raises(RecipeError, match=r"run_settings .*needs launcher: torchrun"):
        RunSettings(processes=2).apply(recipe)


def write_checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    state = json.dumps({"global_step": step})
    (checkpoint / "trainer_state.json").write_text(state if complete else state[:7])  # cut mid-write
    return checkpoint


def test_the_newest_complete_checkpoint_is_resumed_and_a_cut_one_removed(tmp_path):
    checkpoints.mark(tmp_path, "f00d", 1)
    write_checkpoint(tmp_path, 6)
    newest = write_checkpoint(tmp_path, 12)
    cut = write_checkpoint(tmp_path, 18, complete=False)
    checkpoints.claim(tmp_path, "f00d", 1)
    assert checkpoints.newest_complete(tmp_path) == (12, newest)
    assert checkpoints.drop_incomplete(tmp_path) == [cut] and not cut.exists() and newest.exists()


def test_checkpoints_of_another_training_or_process_count_are_refused(tmp_path):
    checkpoints.mark(tmp_path, "f00d", 2)
    checkpoints.claim(tmp_path, "beef", 1)  # no checkpoint yet: nothing to protect
    write_checkpoint(tmp_path, 6)
    with pytest.raises(RecipeError, match="another training \\(fingerprint f00d, this one is beef\\)"):
        checkpoints.claim(tmp_path, "beef", 2)
    with pytest.raises(RecipeError, match="written by 2 process\\(es\\) and this launch has 1"):
        checkpoints.claim(tmp_path, "f00d", 1)


def test_the_training_pod_asks_for_the_recipes_gpus_and_mounts_the_artifacts(make_recipe):
    from dagster_k8s.pipes import build_pod_body
    from kubernetes.client import V1Pod

    recipe = make_recipe(
        compute={
            "launcher": "torchrun",
            "processes": 4,
            "kubernetes": {"gpus": 4, "cpu": "16", "memory": "64Gi", "node_selector": {"gpu": "h100"}},
        }
    )
    launcher = KubernetesTraining(image="registry.example/finetune-assets:0.1", artifacts_claim="finetune-artifacts")
    command = training_command(recipe, **PATHS)
    arguments = launcher.run_arguments(recipe, Path("/data/artifacts"), command, {"TOKENIZERS_PARALLELISM": "false"})
    pod = build_pod_body(
        pod_name="dagster-training",
        image=arguments["image"],
        command=arguments["command"],
        env_vars=arguments["env"],
        base_pod_meta=None,
        base_pod_spec=arguments["base_pod_spec"],
    )
    assert isinstance(pod, V1Pod)
    container = pod.spec.containers[0]
    assert container.image == "registry.example/finetune-assets:0.1"
    assert container.command == ["python", *command[1:]]  # the image's interpreter, torchrun over 4 GPUs
    assert container.command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert container.resources.limits == {"nvidia.com/gpu": "4", "memory": "64Gi"}
    assert container.resources.requests == {"nvidia.com/gpu": "4", "cpu": "16", "memory": "64Gi"}
    assert {(m.name, m.mount_path) for m in container.volume_mounts} == {
        ("artifacts", "/data/artifacts"),
        ("shm", "/dev/shm"),
    }
    claim = next(v for v in pod.spec.volumes if v.name == "artifacts").persistent_volume_claim
    assert claim.claim_name == "finetune-artifacts"
    assert {e.name: e.value for e in container.env}["FINETUNE_ARTIFACTS_DIR"] == "/data/artifacts"
    assert pod.spec.restart_policy == "Never" and pod.spec.node_selector == {"gpu": "h100"}
    assert pod.spec.tolerations[0].key == "nvidia.com/gpu"


def test_a_training_resumes_its_checkpoints_unless_forced_and_drops_them_once_complete(make_recipe, tmp_path):
    import logging

    from finetune_assets.pipeline.artifacts import checkpoint_folder
    from finetune_assets.pipeline.chain import Stage
    from finetune_assets.pipeline.runner import run_stage

    seen = []

    def train(work):
        seen.append(sorted(p.name for p in work.checkpoints.iterdir()) if work.checkpoints.exists() else [])
        return {}, {}

    stage = Stage("trained", (), "", "a training stage", "1", ("training",), train, trains=True)
    recipe, root = make_recipe(), tmp_path / "artifacts"
    left = checkpoint_folder(root, recipe.name, stage.fingerprint(recipe, []))
    for force in (False, True):
        (left / "checkpoint-3").mkdir(parents=True)
        run_stage(stage, recipe, root, logging.getLogger("test"), [], force=force)
        assert not left.exists(), "a completed stage leaves no checkpoints behind"
    assert seen == [["checkpoint-3"], []], "the first run sees the crashed attempt's checkpoint, force does not"


def test_the_training_process_leaves_bitsandbytes_out_unless_it_trains_qlora(make_recipe, tmp_path):
    """peft loads bitsandbytes (and torch's compiler) whenever it is installed; a full or LoRA
    training process keeps it out, a QLoRA one gets it as before."""
    lora = make_recipe(method="lora")
    assert (
        python(
            "import sys; from finetune_assets.recipes import load_recipe; "
            "from finetune_assets.training.run import spare_imports; "
            f"spare_imports(load_recipe({str(lora.source_file)!r})); "
            "import finetune_assets.training.trainer, peft; "
            "print(sys.modules.get('bitsandbytes') is not None)"
        )
        == "False"
    )
    from finetune_assets.training.run import spare_imports

    before = sys.modules.get("bitsandbytes", "not imported")
    spare_imports(make_recipe(name="q", method="qlora"))
    assert sys.modules.get("bitsandbytes", "not imported") is before, "a QLoRA process imports it as usual"
