"""The Hugging Face Hub target: the export folder uploaded to ``repo_id`` in one commit.

The repository is created private unless the recipe says ``private: false``; every file of the
export goes up in one ``create_commit`` (model card, safetensors, tokenizer, GGUF files and the
Ollama Modelfile where the export has them), whose message names the champion's fingerprint and the
gate's decision, so :meth:`HubRepo.find` recognizes a champion already uploaded by its commit. The
token is whatever ``huggingface_hub`` finds itself (``HF_TOKEN``, else the cached login): this
module never reads, passes, logs or writes it. The operations are built by :func:`operations` and
:func:`commit_message`, apart from the network calls, so they are tested here where no Hub is.
"""

from __future__ import annotations

from pathlib import Path

from finetune_assets.pipeline.caching import RECORD
from finetune_assets.publishing.targets import Champion, Published

HUB = "https://huggingface.co"


def uploaded_files(folder: Path) -> list[Path]:
    """The export's files as uploaded, relative to it: everything but the local record (``artifact.json``,
    which holds this machine's paths) and hidden files."""
    return sorted(
        path.relative_to(folder)
        for path in folder.rglob("*")
        if path.is_file()
        and path.name != RECORD
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def operations(folder: Path) -> list:
    """One ``CommitOperationAdd`` per uploaded file, in path order."""
    from huggingface_hub import CommitOperationAdd

    return [
        CommitOperationAdd(path_in_repo=relative.as_posix(), path_or_fileobj=str(folder / relative))
        for relative in uploaded_files(folder)
    ]


def commit_message(champion: Champion) -> str:
    """The commit's title: the recipe, the fingerprint (what :meth:`HubRepo.find` looks for), the decision."""
    return f"{champion.recipe.name}: champion {champion.fingerprint} ({champion.decision or 'current champion'})"


class HubRepo:
    """One model repository on the Hub."""

    name = "hub"

    def __init__(self, repo_id: str, private: bool = True):
        self.address, self.private = repo_id, private

    def repo_settings(self) -> dict:
        """The arguments of ``create_repo``: private by default, an existing repository kept."""
        return {"repo_id": self.address, "repo_type": "model", "private": self.private, "exist_ok": True}

    def find(self, champion: Champion) -> Published | None:
        """The commit that uploaded this champion, found by the fingerprint in its message; None if the
        repository or the commit does not exist."""
        from huggingface_hub import HfApi
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            commits = HfApi().list_repo_commits(self.address, repo_type="model")
        except RepositoryNotFoundError:
            return None
        marker = f"champion {champion.fingerprint} "
        for commit in commits:
            if marker in f"{commit.title} ":
                return self._published(champion, commit.commit_id, created=False)
        return None

    def publish(self, champion: Champion) -> Published:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(**self.repo_settings())
        info = api.create_commit(
            self.address,
            operations=operations(champion.folder),
            commit_message=commit_message(champion),
            repo_type="model",
        )
        return self._published(champion, info.oid, created=True)

    def _published(self, champion: Champion, commit: str, created: bool) -> Published:
        return Published(
            self.name, self.address, champion.fingerprint, commit, f"{HUB}/{self.address}", created, {"commit": commit}
        )
