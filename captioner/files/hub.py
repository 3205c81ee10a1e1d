"""Downloading a model repository from the Hugging Face Hub into huggingface_hub's cache.

What an `hf:OWNER/NAME[@REVISION]` name means is the registry's (captioner/registry.py); this
module only fetches files and turns huggingface_hub's errors into one-line HubErrors.
huggingface_hub is imported where it is used: the app reads model names on its UI thread, and
the commands' --help comes up before it is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class HubError(ValueError):
    """A Hub model that cannot be had: a bad name, no such repository or revision, a repository
    that is not a captioner model, no network (or HF_HUB_OFFLINE) and no cached copy."""


def download_files(repo_id: str, revision: str | None, files: Sequence[str], *, name: str) -> Path:
    """The folder in huggingface_hub's cache holding `files` of the repository `repo_id` at
    `revision` (None: its default branch): downloaded if the cache lacks them, else read from
    the cache (offline too, HF_HUB_OFFLINE=1). Only `files` are fetched: a repository's other
    files (training logs, checkpoints to resume) never are. Raises HubError, naming the model
    as `name` (what the person asked for, e.g. "hf:someone/model@v2")."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"the Hub at {constants.ENDPOINT}"
    try:
        return Path(
            snapshot_download(
                repo_id, revision=revision, allow_patterns=list(files), library_name="captioner"
            )
        )
    except RevisionNotFoundError as error:
        raise HubError(f"{name}: {repo_id} has no revision {revision!r} on {where}") from error
    except RepositoryNotFoundError as error:  # also what a private or gated one answers
        raise HubError(
            f"{name}: no model repository {repo_id} on {where} (a private one needs "
            "a token: set HF_TOKEN or run `hf auth login`)"
        ) from error
    except LocalEntryNotFoundError as error:  # not cached, and the Hub could not be asked
        if constants.is_offline_mode():
            raise HubError(
                f"{name}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}), and "
                "HF_HUB_OFFLINE is set, so it is not downloaded; unset HF_HUB_OFFLINE to "
                "download it once"
            ) from error
        raise HubError(
            f"{name}: cannot reach {where}, and the model is not in the Hugging Face cache "
            f"({short_reason(error.__cause__ or error)})"
        ) from error
    except HfHubHTTPError as error:
        raise HubError(f"{name}: {where} answered {short_reason(error)}") from error
    except OSError as error:  # the network or the cache directory
        raise HubError(f"{name}: cannot download it ({short_reason(error)})") from error


def short_reason(error: BaseException) -> str:
    """The first line of an error and of the error behind it: huggingface_hub's messages run
    to paragraphs of advice that a one-line report does not need."""
    lines = [str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__]
    if error.__cause__ is not None and str(error.__cause__).strip():
        lines.append(str(error.__cause__).strip().splitlines()[0])
    return ": ".join(lines)
