"""Stage A and stage B artifacts in a Store, keyed by content (hash of every field that determines them).

Layout: ``artifacts/models/<key>.pt`` (state_dict, loaded with weights_only=True) and
``artifacts/maps/<key>/{train,test}.npy`` (float16). A ``.json`` meta file, written last, marks an
artifact complete. It records the sha256 of each payload, the fields the key is the hash of, and
``meta_sha256``: the sha256 of its own canonical JSON without that entry, so an edit of any value in
it (say base_accuracy) is detected too.

Every load checks all three before a byte is used (``load_model_state``, ``load_maps``): the meta's
own checksum, its fields against the key, each payload against its recorded sha256, on the very bytes
that are then deserialised. A mismatch raises ``ArtifactMismatch``; the pipeline then recomputes the
artifact, and a tampered artifact is never used. A missing meta file raises ``ArtifactMissing``.
"""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import torch

from .spec import canonical_json, content_key
from .storage import Store

MODELS_DIR = "artifacts/models"
MAPS_DIR = "artifacts/maps"
META_SHA = "meta_sha256"


class ArtifactMissing(FileNotFoundError):
    """No complete artifact under this key (its meta file is absent): compute it."""


class ArtifactMismatch(ValueError):
    """An artifact's bytes do not match its key or its checksums; the message says which file and how."""


def model_meta_key(key: str) -> str:
    return f"{MODELS_DIR}/{key}.json"


def maps_meta_key(key: str) -> str:
    return f"{MAPS_DIR}/{key}/meta.json"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _meta_bytes(meta: dict) -> bytes:
    body = {k: v for k, v in meta.items() if k != META_SHA}
    return json.dumps({**body, META_SHA: _sha(canonical_json(body).encode())}).encode()


def save_model(store: Store, key: str, model: torch.nn.Module, meta: dict) -> None:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    payload = buf.getvalue()
    store.write_bytes(f"{MODELS_DIR}/{key}.pt", payload)
    store.write_bytes(model_meta_key(key), _meta_bytes({**meta, "sha256": {"model": _sha(payload)}}))


def save_maps(store: Store, key: str, maps: dict[str, np.ndarray], meta: dict) -> None:
    hashes = {}
    for split, arr in maps.items():
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr, dtype=np.float16), allow_pickle=False)
        payload = buf.getvalue()
        hashes[split] = _sha(payload)
        store.write_bytes(f"{MAPS_DIR}/{key}/{split}.npy", payload)
    store.write_bytes(maps_meta_key(key), _meta_bytes({**meta, "sha256": hashes}))


# --- checked loads ----------------------------------------------------------------------------------
def meta_checksum_problem(meta: dict) -> str | None:
    """Why a parsed meta file's values cannot be trusted (no or a wrong meta_sha256), or None."""
    recorded = meta.get(META_SHA)
    if recorded is None:
        return ("meta file has no meta_sha256 (written before checksummed meta files, or edited): its values "
                "cannot be trusted")
    body = {k: v for k, v in meta.items() if k != META_SHA}
    if _sha(canonical_json(body).encode()) != recorded:
        return "meta file was changed after it was written (its content does not match its meta_sha256)"
    return None


def meta_problems(meta, kind: str, key: str) -> list[str]:
    """What is wrong with a parsed meta file of artifact (kind, key): its own checksum, its fields'
    hash against the key, the shape of its sha256 record. Empty when it can be trusted."""
    if not isinstance(meta, dict):
        return [f"meta file is not a JSON object ({type(meta).__name__})"]
    problems = [p for p in [meta_checksum_problem(meta)] if p]
    fields = meta.get("fields")
    if not isinstance(fields, dict) or content_key(fields, kind=kind) != key:
        problems.append(f"meta fields do not hash to the key {key!r}: the artifact belongs to another setup")
    hashes = meta.get("sha256")
    if not isinstance(hashes, dict) or not hashes or not all(isinstance(v, str) for v in hashes.values()):
        problems.append("meta file records no sha256 of its payloads")
    return problems


def _read_meta(store: Store, kind: str, key: str) -> dict:
    meta_key = model_meta_key(key) if kind == "model" else maps_meta_key(key)
    if not store.exists(meta_key):
        raise ArtifactMissing(f"{meta_key}: not in the store")
    try:
        meta = json.loads(store.read_bytes(meta_key))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactMismatch(f"{meta_key}: unreadable meta file ({type(exc).__name__}: {exc})") from None
    problems = meta_problems(meta, kind, key)
    if problems:
        raise ArtifactMismatch(f"{meta_key}: " + "; ".join(problems))
    return {k: v for k, v in meta.items() if k != META_SHA}


def _checked_payload(store: Store, payload_key: str, digest: str | None) -> bytes:
    if digest is None:
        raise ArtifactMismatch(f"{payload_key}: its meta file records no sha256 for it")
    if not store.exists(payload_key):
        raise ArtifactMismatch(f"{payload_key}: missing, though its meta file marks the artifact complete")
    data = store.read_bytes(payload_key)
    if _sha(data) != digest:
        raise ArtifactMismatch(f"{payload_key}: content does not match its recorded sha256 (damaged or edited)")
    return data


def load_model_state(store: Store, key: str) -> tuple[dict, dict]:
    """(state_dict, meta) of a verified model artifact; ArtifactMissing / ArtifactMismatch otherwise."""
    meta = _read_meta(store, "model", key)
    data = _checked_payload(store, f"{MODELS_DIR}/{key}.pt", meta["sha256"].get("model"))
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return state, meta


def load_maps(store: Store, key: str, splits=("train", "test")) -> dict[str, np.ndarray]:
    """float16 arrays of a verified map set, parsed from the very bytes that were checked (no memory
    map: a file changed after the check could not then leak in)."""
    meta = _read_meta(store, "maps", key)
    return {split: np.load(io.BytesIO(_checked_payload(store, f"{MAPS_DIR}/{key}/{split}.npy",
                                                       meta["sha256"].get(split))), allow_pickle=False)
            for split in splits}


def check_artifact(store: Store, kind: str, key: str) -> str | None:
    """None when the artifact (kind 'model' or 'maps') is complete and verified, else why not."""
    try:
        meta = _read_meta(store, kind, key)
        base = f"{MODELS_DIR}/{key}" if kind == "model" else f"{MAPS_DIR}/{key}"
        for part, digest in meta["sha256"].items():
            _checked_payload(store, f"{base}.pt" if kind == "model" else f"{base}/{part}.npy", digest)
    except (ArtifactMissing, ArtifactMismatch) as exc:
        return str(exc)
    return None


def verify_artifact(store: Store, meta_key: str) -> list[str]:
    """Problems with one artifact's payloads: missing, or sha256 no longer matching (``roar verify``;
    the meta file itself is checked by ``meta_problems``)."""
    meta = json.loads(store.read_bytes(meta_key))
    base = meta_key[: -len(".json")] if meta_key.startswith(MODELS_DIR) else meta_key.rsplit("/", 1)[0]
    problems = []
    for part, digest in meta.get("sha256", {}).items():
        payload_key = f"{base}.pt" if meta_key.startswith(MODELS_DIR) else f"{base}/{part}.npy"
        if not store.exists(payload_key):
            problems.append(f"{payload_key}: missing")
        elif _sha(store.read_bytes(payload_key)) != digest:
            problems.append(f"{payload_key}: content does not match its recorded sha256")
    return problems
