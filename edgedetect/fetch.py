"""Download a known dataset from Kaggle with ``kagglehub`` (needs internet and Kaggle credentials)."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KaggleDataset:
    handle: str
    description: str


DATASETS = {
    "cifake": KaggleDataset(
        "birdy654/cifake-real-and-ai-generated-synthetic-images",
        "CIFAKE: 60k REAL (CIFAR-10) + 60k FAKE (Stable Diffusion 1.4) 32x32 JPEGs, train|test/REAL|FAKE",
    ),
    "faces": KaggleDataset(
        "philosopher0808/real-vs-ai-generated-faces-dataset",
        "real vs AI-generated faces, train|validate|test/0|1 (0 = real, 1 = AI)",
    ),
}

_CREDENTIALS_HELP = (
    "set KAGGLE_API_TOKEN, or KAGGLE_USERNAME and KAGGLE_KEY, or put kaggle.json in ~/.kaggle/ "
    "(Kaggle > Settings > API > Create New Token)"
)


def _by_hand(spec: KaggleDataset) -> str:
    return (f"or download it by hand from https://www.kaggle.com/datasets/{spec.handle} "
            "and pass the folder or .zip to --data")


def _explain(error: Exception, spec: KaggleDataset) -> str | None:
    """One line for a download failure the user can fix; None for anything that looks like a bug."""
    import requests
    from kagglehub import exceptions as kh

    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, (kh.UnauthenticatedError, kh.CredentialError)) or status in (401, 403):
        return f"Kaggle refused the download of {spec.handle} ({first_line}): {_CREDENTIALS_HELP}, {_by_hand(spec)}"
    if isinstance(error, ValueError) and "credentials" in str(error).lower():  # a malformed kaggle.json
        return f"{first_line}: fix it, or {_CREDENTIALS_HELP.removeprefix('set ')}, {_by_hand(spec)}"
    if status == 404 or isinstance(error, kh.NotFoundError):
        return f"Kaggle has no dataset {spec.handle} ({first_line}); {_by_hand(spec)}"
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return (f"cannot reach Kaggle to download {spec.handle} (no network?): connect to the internet and retry, "
                f"{_by_hand(spec)}")
    if isinstance(error, (requests.RequestException, kh.BackendError, kh.DataCorruptionError)):
        return f"download of {spec.handle} failed ({first_line}); retry later, {_by_hand(spec)}"
    if isinstance(error, OSError):  # disk full, no permission on the output folder
        return f"cannot write the download of {spec.handle} ({error}); free space or pick another --to folder"
    return None


def fetch(name: str, to: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Download dataset ``name`` (``cifake`` or ``faces``) with kagglehub; returns the folder holding it.

    Args:
        name: a key of :data:`DATASETS`.
        to: put the files in this folder instead of kagglehub's cache (~/.cache/kagglehub).
        force: download again even when a copy is already there.

    Raises:
        EdgeDetectError: unknown name, kagglehub missing, no network, missing or refused credentials.
    """
    from edgedetect.errors import EdgeDetectError

    spec = DATASETS.get(name)
    if spec is None:
        raise EdgeDetectError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    try:
        import kagglehub
    except ImportError:
        raise EdgeDetectError(
            f"fetching needs kagglehub: pip install kagglehub (or pip install 'edgedetect[train]'), {_by_hand(spec)}"
        ) from None
    download = kagglehub.dataset_download
    kwargs = {"force_download": force}
    # kagglehub < 0.3.10 has no output_dir: download to its cache, then link the folder the user asked for.
    link_to = None
    if to is not None:
        if "output_dir" in inspect.signature(download).parameters:
            kwargs["output_dir"] = str(to)
        else:
            link_to = Path(to)
            if link_to.exists() or link_to.is_symlink():
                raise EdgeDetectError(f"--to {link_to} already exists; this kagglehub can only link a new folder "
                                      "there (upgrade kagglehub, or pick a path that does not exist)")
    try:
        landed = Path(download(spec.handle, **kwargs))
    except Exception as e:
        message = _explain(e, spec)
        if message is None:
            raise
        raise EdgeDetectError(message) from None
    if link_to is not None:
        link_to.parent.mkdir(parents=True, exist_ok=True)
        link_to.symlink_to(landed.resolve(), target_is_directory=True)
        landed = link_to
    return landed
