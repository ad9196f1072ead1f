"""Where the Optuna studies of a search live: in the results store, beside the rows, so a search that
is interrupted and rerun continues the same studies.

- Local store (a folder, also NFS): one SQLite file per search spec, ``STORE/search/<name>.db``.
- Object store (``s3://``, ``gs://``): SQLite cannot live there, so the studies are an Optuna journal
  (``JournalFileBackend``) in a local working file that is uploaded whole, atomically (one object
  write), to ``STORE/search/<name>.journal`` after every finished trial. On start the store's copy is
  downloaded, unless the local working file already extends it (same first bytes, more of them), which
  is what a crash between a trial and its upload leaves behind on the same machine.

One search process per study at a time: Optuna's storages take concurrent writers, but on resume the
trials still marked RUNNING are taken to belong to a process that died (see ``resolve_orphans``).
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tempfile
import zlib
from typing import Callable

from roar.storage import Store

SEARCH_DIR = "search"


class StudySetupError(ValueError):
    """A study of that name exists with a different setup (cell fields, space or settings)."""


class StudyStore:
    """The Optuna storage of one search spec in a results store."""

    def __init__(self, store: Store, name: str, work_dir: str | None = None):
        self.store, self.name = store, name
        self._storage = None
        if store.is_local:
            self.key = posixpath.join(SEARCH_DIR, f"{name}.db")
            self.local_path = store.path(self.key)
        else:
            self.key = posixpath.join(SEARCH_DIR, f"{name}.journal")
            tag = hashlib.sha256(store.uri.encode()).hexdigest()[:12]
            base = work_dir or os.path.join(tempfile.gettempdir(), "roar-search", tag)
            self.local_path = os.path.join(base, f"{name}.journal")

    @property
    def where(self) -> str:
        return self.store.path(self.key) if self.store.is_local else f"{self.store.uri.rstrip('/')}/{self.key}"

    def storage(self):
        """The optuna storage object (created once; the SQLite file or journal is created on first use)."""
        if self._storage is None:
            import optuna

            os.makedirs(os.path.dirname(self.local_path), exist_ok=True)
            if self.store.is_local:
                self._storage = optuna.storages.RDBStorage(f"sqlite:///{os.path.abspath(self.local_path)}")
            else:
                self._download()
                backend = optuna.storages.journal.JournalFileBackend(self.local_path)
                self._storage = optuna.storages.JournalStorage(backend)
        return self._storage

    def _download(self) -> None:
        if not self.store.exists(self.key):
            return
        remote = self.store.read_bytes(self.key)
        if os.path.exists(self.local_path):
            with open(self.local_path, "rb") as f:
                local = f.read()
            if len(local) >= len(remote) and local.startswith(remote):
                return  # the working copy has everything the store has, and maybe trials not yet uploaded
        tmp = f"{self.local_path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(remote)
        os.replace(tmp, self.local_path)

    def sync(self) -> None:
        """Upload the journal to an object store (no-op for a local store: SQLite is written in place)."""
        if self.store.is_local or not os.path.exists(self.local_path):
            return
        with open(self.local_path, "rb") as f:
            self.store.write_bytes(self.key, f.read())


def open_study(study_store: StudyStore, name: str, setup: dict):
    """Create the study or load it (resume); raise StudySetupError when it was made for another setup."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=study_store.storage(), study_name=name, direction="maximize",
                                load_if_exists=True)
    canonical = json.loads(json.dumps(setup, sort_keys=True, default=str))
    stored = study.user_attrs.get("setup")
    if stored is None:
        study.set_user_attr("setup", canonical)
    elif stored != canonical:
        changed = sorted(k for k in set(stored) | set(canonical) if stored.get(k) != canonical.get(k))
        detail = _first_difference(stored, canonical)
        how = (f" (optuna delete-study --study-name {name} --storage sqlite:///{study_store.local_path})"
               if study_store.store.is_local else "")
        raise StudySetupError(
            f"study {name!r} in {study_store.where} was made with a different {', '.join(changed)} "
            f"({detail}); resuming would mix trials of two setups. Give the search a new name, or delete "
            f"the study to start over{how}")
    return study


def _first_difference(old, new, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                return _first_difference(old.get(k), new.get(k), f"{path}.{k}" if path else k)
    return f"{path}: was {old!r}, now {new!r}"


def sampler_for(study, seed: int, startup_trials: int):
    """A seeded TPE sampler. Its seed mixes in the study name (the studies of one search draw
    independently) and the number of trials already in the study (a resumed search does not replay
    the random start-up draws of its first run); the same run from the same state repeats exactly."""
    import optuna

    mixed = (seed * 1_000_003 + zlib.crc32(study.study_name.encode()) + len(study.trials)) % 2 ** 32
    # constant_liar: trials still running count as bad results, so concurrent Tune trials are not all
    # drawn at the same promising point (a no-op for the one-at-a-time local backend).
    return optuna.samplers.TPESampler(seed=mixed, n_startup_trials=startup_trials, constant_liar=True)


INTERRUPTED = "interrupted_trials"   # study user attr: numbers of trials failed because their process died


def counted_trials(study) -> int:
    """Trials that used budget: finished ones (complete, pruned or failed), except those that failed
    only because their process was interrupted (they are run again)."""
    from optuna.trial import TrialState

    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for t in study.trials)
    return finished - len(study.user_attrs.get(INTERRUPTED, []))


def resolve_orphans(study, stored_value: Callable[[dict], float | None]) -> tuple[int, int]:
    """Trials left RUNNING by a process that died: complete those whose row was written (the value comes
    from the row, no work is lost), fail the rest and note them, so they do not use budget.
    Returns (completed, failed)."""
    from optuna.trial import TrialState

    completed, failed = 0, []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        value = stored_value(t.params) if t.params else None
        if value is not None:
            study.tell(t.number, value)
            completed += 1
        else:
            study.tell(t.number, state=TrialState.FAIL)
            failed.append(t.number)
    if failed:
        study.set_user_attr(INTERRUPTED, sorted(study.user_attrs.get(INTERRUPTED, []) + failed))
    return completed, len(failed)


def enqueue_baseline(study, params: dict) -> None:
    """Queue `params` as the next trial unless the study already has (or queued) a trial with them."""
    study.enqueue_trial(params, skip_if_exists=True)
