"""Publishing: the champion the gate leaves in place, handed to the systems that serve it.

Here live the ``published_model`` stage (:mod:`.step`), the small interface every target implements
(:mod:`.targets`), the targets themselves (:mod:`.mlflow_registry` with :mod:`.mlflow_pyfunc`,
:mod:`.hub`), what a published champion is tagged with (:mod:`.champion_tags`) and rollback
(:mod:`.rollback`). Not here: which export is the champion (:mod:`finetune_assets.promotion`) and the
files of the export (:mod:`finetune_assets.export`). Publishing never changes the local champion: it
runs after the gate, and a target that fails fails this step only.
"""
