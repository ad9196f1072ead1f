"""The one place Ray Tune is set up: sweeps (sweep.runner) and searches (sweep.search) build their Tuner
here, with the same quiet console, resources, storage folder and credential guard.

Tune keeps only bookkeeping (error.txt per failed trial); the result rows in the store are the record.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from typing import Callable

from roar.storage import Store


def quiet_tune(verbose: bool) -> None:
    """Tune's per-trial JSON/CSV/TensorBoard loggers duplicate the rows, so they are off (and the warning
    that their files are missing silenced); unless verbose, its header boxes and restore hints too."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    if not verbose:
        # the newer console output prints its header boxes even at verbose=0; the legacy one is silent
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # on Ctrl-C Tune suggests Tuner.restore, which we do not use (it can rerun finished trials)
        logging.getLogger("ray.tune.tune").setLevel(logging.ERROR)


def keep_credentials_out_of_ray_logs() -> None:
    """Stop Ray Tune from copying the driver's AWS credentials into the trial actors' runtime_env.

    Tune puts AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and AWS_SECURITY_TOKEN into
    each trainable's runtime_env (ray.tune.execution.class_cache), and Ray's runtime-env agent logs
    every runtime_env in plain text (logs/runtime_env_agent.log): the secret key ends up in a log file.
    Trials do not need the copy: like the stage tasks, they read credentials from their node's
    environment or instance role (a local cluster inherits the driver's environment).
    """
    try:
        from ray.tune.execution import class_cache
    except ImportError:  # a Ray without this module does not copy them either
        return
    names = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", None)
    if isinstance(names, (set, frozenset)):
        class_cache.ENV_VARS_TO_PROPAGATE = frozenset(n for n in names if not n.startswith("AWS_"))


def tune_storage_path(store: Store) -> str:
    """Where Tune keeps its bookkeeping: beside the rows for a local store, else a local temp folder."""
    if store.is_local:
        return os.path.join(store.root, "_tune")
    return os.path.join(tempfile.gettempdir(), "roar-tune")


def make_tuner(trainable: Callable, params: dict, *, resources, name: str, store: Store, verbose: bool,
               max_failures: int, callbacks: list, tune_config: dict, param_space: dict | None = None,
               stop=None):
    """A Tuner over `trainable` (a function trainable; `params` are bound with tune.with_parameters) with
    the spec's per-trial resources, reused actors and a run folder named `name`-time-pid."""
    from ray import tune

    quiet_tune(verbose)
    keep_credentials_out_of_ray_logs()
    bound = tune.with_parameters(trainable, **params)
    bound = tune.with_resources(bound, {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial})
    return tune.Tuner(
        bound,
        param_space=param_space,
        tune_config=tune.TuneConfig(reuse_actors=True, **tune_config),
        run_config=tune.RunConfig(
            name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
            storage_path=tune_storage_path(store), verbose=2 if verbose else 0, stop=stop,
            callbacks=callbacks, failure_config=tune.FailureConfig(max_failures=max_failures)),
    )


def remove_tune_folder(path: str) -> None:
    """Drop a finished run's Tune folder (and the _tune folder when no other run is in it)."""
    if path and os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(path))
        except OSError:
            pass
