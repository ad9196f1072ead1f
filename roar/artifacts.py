"""Stage A and stage B artifacts in a Store, keyed by content (hash of every field that determines them).

Layout: ``artifacts/models/<key>.pt`` (state_dict, loaded with weights_only=True) and
``artifacts/maps/<key>/{train,test}.npy`` (float16). A ``.json`` meta file, written last, marks an
artifact complete and records the sha256 of each payload so `roar verify` can detect damage.
"""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import torch

from .storage import Store

MODELS_DIR = "artifacts/models"
MAPS_DIR = "artifacts/maps"


def model_meta_key(key: str) -> str:
    return f"{MODELS_DIR}/{key}.json"


def maps_meta_key(key: str) -> str:
    return f"{MAPS_DIR}/{key}/meta.json"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(store: Store, key: str, model: torch.nn.Module, meta: dict) -> None:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    payload = buf.getvalue()
    store.write_bytes(f"{MODELS_DIR}/{key}.pt", payload)
    store.write_bytes(model_meta_key(key), json.dumps({**meta, "sha256": {"model": _sha(payload)}}).encode())


def load_model_state(store: Store, key: str) -> tuple[dict, dict]:
    meta = json.loads(store.read_bytes(model_meta_key(key)))
    state = torch.load(io.BytesIO(store.read_bytes(f"{MODELS_DIR}/{key}.pt")), map_location="cpu",
                       weights_only=True)
    return state, meta


def save_maps(store: Store, key: str, maps: dict[str, np.ndarray], meta: dict) -> None:
    hashes = {}
    for split, arr in maps.items():
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr, dtype=np.float16), allow_pickle=False)
        payload = buf.getvalue()
        hashes[split] = _sha(payload)
        store.write_bytes(f"{MAPS_DIR}/{key}/{split}.npy", payload)
    store.write_bytes(maps_meta_key(key), json.dumps({**meta, "sha256": hashes}).encode())


def load_maps(store: Store, key: str, splits=("train", "test")) -> dict[str, np.ndarray]:
    """float16 arrays; memory-mapped when the store is local (loaded once per worker by the caller)."""
    out = {}
    for split in splits:
        k = f"{MAPS_DIR}/{key}/{split}.npy"
        local = store.local_path(k)
        if local is not None:
            out[split] = np.load(local, mmap_mode="r", allow_pickle=False)
        else:
            out[split] = np.load(io.BytesIO(store.read_bytes(k)), allow_pickle=False)
    return out


def verify_artifact(store: Store, meta_key: str) -> list[str]:
    """Problems with one artifact: missing payloads or payloads whose sha256 no longer matches."""
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
