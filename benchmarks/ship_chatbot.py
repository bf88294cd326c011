"""``chatbot_sft`` shipped: the whole chain from the command line on a fresh ``DAGSTER_HOME``, with
``publish:`` to a local MLflow server and GGUF (f16, q8_0) and an Ollama Modelfile on.

Why: publishing must not make the loop it ends impractical. This measures what shipping costs in
the run a user starts (``dagster asset materialize --select 'group:chatbot_sft'``): the wall time of
the whole run, the GGUF step's share of it (writing the files; the ``gguf_verified`` check that
reads them back is reported beside it), the files' sizes, and how the GGUF files answer against the
merged model on the check's test rows. It then loads ``models:/chatbot_sft@champion`` from the
registry (``mlflow.pyfunc``) and asks it the first test question, to show the chat export comes
back as a working pipeline.

The recipe is the packaged one with a ``publish:`` section added; ``--quick`` trains 32 rows and
scores 8 (the gate's ``min_test_rows`` lowered to match). Needs the ``mlflow`` and ``gguf`` extras
and the llama.cpp converter (``python -m finetune_assets.export.llama_cpp``).

    .venv/bin/python benchmarks/ship_chatbot.py --quick
    .venv/bin/python benchmarks/ship_chatbot.py          # the recipe as shipped: 640 training rows
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import common
import yaml

RECIPE = "chatbot_sft"
STAGES = (*common.SIX_STAGES, "published_model")
PUBLISH = {"gguf": {"types": ["f16", "q8_0"], "ollama": True}}
QUICK = {"training": {"max_train_samples": 32, "max_eval_samples": 8}, "promotion": {"min_test_rows": 8}}


def recipe_file(folder: Path, tracking_uri: str, quick: bool) -> None:
    """The packaged recipe, publishing to ``tracking_uri`` and as GGUF (shrunk by ``--quick``)."""
    recipe = yaml.safe_load((common.RECIPES / f"{RECIPE}.yaml").read_text())
    recipe["publish"] = {**PUBLISH, "mlflow": {"tracking_uri": tracking_uri}}
    for section, values in (QUICK if quick else {}).items():
        recipe[section] = {**recipe.get(section, {}), **values}
    folder.mkdir(parents=True)
    (folder / f"{RECIPE}.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))


def materialize(work: Path, tracking_uri: str) -> tuple[float, dict]:
    """The CLI run on a fresh instance; its seconds and the environment it ran with."""
    env = common.fresh_instance(work, FINETUNE_RECIPES=str(work / "recipes"), MLFLOW_TRACKING_URI=tracking_uri)
    return common.cli_materialize(env, RECIPE, work / "run.log"), env


def first_question(report: Path) -> str:
    """The first test question the evaluation report shows."""
    return json.loads(report.read_text())["tuned"]["samples"][0]["text"]


def registry_answer(tracking_uri: str, question: str) -> str:
    """The registry's champion, loaded through ``mlflow.pyfunc``, answering ``question`` greedily."""
    import mlflow.pyfunc

    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    model = mlflow.pyfunc.load_model(f"models:/{RECIPE}@champion")
    answer = model.predict([[{"role": "user", "content": question}]], params={"max_new_tokens": 24, "do_sample": False})
    return answer[0][0]["generated_text"][-1]["content"]


def figures_of(meta: dict, seconds: float, answer: tuple[str, str]) -> dict:
    exported, published = meta["exported_model"], meta["published_model"]
    export = Path(exported["path"])
    return {
        "wall_seconds": seconds,
        **{f"{stage}_seconds": values.get("stage_seconds") for stage, values in meta.items()},
        "train_seconds": meta["finetuned_model"].get("train_seconds"),
        "gguf_write_seconds": exported["gguf_seconds"],
        "gguf_write_share_of_wall": exported["gguf_seconds"] / seconds,
        "merged_safetensors_MB": sum(path.stat().st_size for path in export.glob("*.safetensors")) / 1e6,
        **{f"{name}_MB": entry["bytes"] / 1e6 for name, entry in exported["gguf_files"].items()},
        **{key.removeprefix("gguf_check_"): value for key, value in exported.items() if key.startswith("gguf_check_")},
        "decision": exported.get("decision"),
        "mlflow_version": published.get("mlflow_version"),
        "registry_question": answer[0][:80],
        "registry_answer": answer[1][:120],
    }


def main() -> None:
    cli = common.parser(__doc__)
    cli.add_argument("--keep", metavar="DIR", help="work in DIR (new) and keep it: the run log, artifacts, instance")
    args = cli.parse_args()
    from finetune_assets.publishing.local_mlflow import LocalMlflowServer

    with tempfile.TemporaryDirectory(prefix="ship-chatbot-") as scratch:
        work = Path(args.keep or scratch)
        with LocalMlflowServer(work / "mlflow") as server:
            recipe_file(work / "recipes", server.uri, args.quick)
            seconds, env = materialize(work, server.uri)
            meta = common.latest_metadata(env["DAGSTER_HOME"], RECIPE, STAGES)
            question = first_question(Path(meta["evaluation_report"]["path"]))
            figures = figures_of(meta, seconds, (question, registry_answer(server.uri, question)))
    common.print_figures("ship_chatbot", figures, args.quick)


if __name__ == "__main__":
    main()
