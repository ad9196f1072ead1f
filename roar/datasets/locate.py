"""Where on-disk datasets are looked for, and the optional torchvision download.

Search order for a dataset `name` when no root is given: the system folders a distribution package
installs (e.g. /usr/share/datasets/fashion-mnist), then the user cache `$ROAR_DATA_DIR/<name>`
(default `~/.cache/roar/<name>`). An explicit root is the only place looked at, so a typo in a spec
never silently falls back to other data. Each base folder is also tried with the sub-folders a
download tool creates (torchvision's `FashionMNIST/raw`, `cifar-10-batches-py`, CUB's
`CUB_200_2011`). Environment variables are read at call time, never at import.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .core import DatasetMissingError

DEFAULT_CACHE = "~/.cache/roar"


def cache_base() -> Path:
    """The user data cache: $ROAR_DATA_DIR, else ~/.cache/roar."""
    return Path(os.environ.get("ROAR_DATA_DIR") or DEFAULT_CACHE).expanduser()


def download_enabled() -> bool:
    """ROAR_DOWNLOAD=1 (or true/yes) lets loaders fetch missing data with torchvision."""
    return os.environ.get("ROAR_DOWNLOAD", "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class FileSource:
    """How to find one on-disk dataset.

    probe(folder) says whether `folder` holds the dataset's files. `expected` describes those files
    and `how_to_get` the ways to obtain them (both go into DatasetMissingError). `download(folder)`
    fetches the data into `folder` (None: no automatic download exists).
    """

    name: str
    probe: Callable[[Path], bool]
    expected: str
    how_to_get: str
    system_dirs: tuple[str, ...] = ()
    subdirs: tuple[str, ...] = ()
    download: Callable[[Path], None] | None = field(default=None)

    def default_dir(self) -> Path:
        return cache_base() / self.name

    def candidates(self, root: str | os.PathLike | None) -> list[Path]:
        bases = [Path(root).expanduser()] if root is not None else \
            [Path(d) for d in self.system_dirs] + [self.default_dir()]
        out: list[Path] = []
        for base in bases:
            for folder in (base, *(base / sub for sub in self.subdirs)):
                if folder not in out:
                    out.append(folder)
        return out

    def find(self, root) -> tuple[Path | None, list[Path]]:
        """The first candidate folder holding the files (or None) and every folder tried."""
        tried = self.candidates(root)
        for folder in tried:
            if folder.is_dir() and self.probe(folder):
                return folder, tried
        return None, tried

    def missing(self, root) -> DatasetMissingError | None:
        found, tried = self.find(root)
        if found is not None:
            return None
        return DatasetMissingError(self.name, [str(p) for p in tried], self.expected, self.how_to_get)

    def locate(self, root) -> Path:
        """The folder holding the files; downloads first when absent and ROAR_DOWNLOAD=1.
        Raises DatasetMissingError otherwise."""
        error = self.missing(root)
        if error is None:
            return self.find(root)[0]
        if self.download is not None and download_enabled():
            target = Path(root).expanduser() if root is not None else self.default_dir()
            target.mkdir(parents=True, exist_ok=True)
            self.download(target)
            found, _ = self.find(root)
            if found is not None:
                return found
        raise error


def torchvision_download(class_name: str, *split_kwargs: dict) -> Callable[[Path], None]:
    """A download function calling torchvision.datasets.<class_name>(folder, download=True, **kw)
    once per kwargs dict (e.g. one per split for SVHN)."""

    def download(folder: Path) -> None:
        import torchvision.datasets as tvd

        cls = getattr(tvd, class_name)
        for kwargs in split_kwargs or ({},):
            cls(str(folder), download=True, **kwargs)

    download.__name__ = f"download_{class_name}"
    return download


def all_exist(*names: str) -> Callable[[Path], bool]:
    """A probe that is true when every named file or folder exists inside the candidate folder."""
    return lambda folder: all((folder / n).exists() for n in names)
