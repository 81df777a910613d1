"""Adapters on the Hugging Face Hub: resolve a local folder or a repo id, upload a folder.

Both go through ``huggingface_hub`` (installed with transformers). Neither is exercised against the
real Hub by the tests here (no network): a repo id is downloaded with ``snapshot_download``, which
also serves a repository already in the local cache when ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

from pathlib import Path

from intrinsic_dim.adapter.format import CONFIG_NAME, WEIGHTS_NAME, AdapterError

CARD_NAME = "README.md"


def resolve_adapter(path_or_repo_id: str | Path, revision: str | None = None) -> Path:
    """The local folder of an adapter: ``path_or_repo_id`` itself if it exists, else a Hub download."""
    local = Path(path_or_repo_id)
    if local.exists() or isinstance(path_or_repo_id, Path):
        return local
    name = str(path_or_repo_id)
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(name)
    except ImportError as e:
        raise AdapterError(f"{name} is not a local folder, and loading a Hub repo id needs huggingface_hub ({e})") from e
    except ValueError:
        raise AdapterError(f"{name} is neither an existing folder nor a valid Hub repo id (owner/name)") from None
    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME]))
    except (OSError, ValueError) as e:
        raise AdapterError(
            f"{name} is not a local folder, and the Hub repository {name!r} could not be fetched "
            f"({type(e).__name__}: {e}). Offline (HF_HUB_OFFLINE=1, or no network) only repositories already in "
            "the Hugging Face cache load; otherwise pass the adapter's local folder"
        ) from e


def upload_folder(folder: str | Path, repo_id: str, private: bool | None = None, token: str | None = None,
                  commit_message: str = "Upload intrinsic-dim adapter") -> str:
    """Create ``repo_id`` (if missing) and upload ``folder`` to it; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    return str(api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message))
