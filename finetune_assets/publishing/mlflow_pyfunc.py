"""The export folder as an MLflow ``pyfunc`` model: what the registry holds for each champion.

MLflow's ``transformers`` flavor (3.17) cannot log a folder under transformers 5 (it reads pipeline
metadata that transformers 5 keeps lazily), so the export is logged as it is, as an artifact, with
this small wrapper: ``mlflow.pyfunc.load_model("models:/<name>@champion")`` loads the folder through
its ``transformers`` pipeline, and ``predict`` answers a list of inputs (or a one-column table)
as the pipeline does. Loading it needs ``finetune_assets`` importable (the wrapper is this class).
"""

import mlflow.pyfunc


class ExportPipeline(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from transformers import pipeline

        task = context.model_config["pipeline_task"]
        folder = context.artifacts["export"]
        self.pipeline = pipeline(task, model=folder, device="cpu", model_kwargs={"use_safetensors": True})

    def predict(self, context, model_input, params=None):
        """The pipeline's answers, one per input, in order."""
        if hasattr(model_input, "columns"):  # a pandas table: its first column
            model_input = model_input[model_input.columns[0]].tolist()
        elif isinstance(model_input, str):
            model_input = [model_input]
        return self.pipeline(list(model_input), **(params or {}))
