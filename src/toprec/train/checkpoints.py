"""Training checkpoints: safetensors for tensors, JSON for everything else, no pickle.

A checkpoint is one folder ``<checkpoint_dir>/last`` holding

- ``state.safetensors``: the module's tensors (``module.*``), the best epoch's
  module tensors (``best.*``), every optimizer's tensors (``opt.<name>.*``)
  and the random generator states (``rng.*``, uint8);
- ``trainer.json``: epoch, best epoch and metric, the per-epoch history, the
  optimizers' param groups and non-tensor state, the run's fingerprint.

The folder is written beside its target and renamed into place
(``toprec.io.atomic_dir``), so a kill at any moment leaves either the previous
complete checkpoint or the new one, never a mixture (a kill between the two
renames of the swap leaves the previous one aside, put back by the next
:func:`load`); the next save removes what killed saves left.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from ..device import require_torch
from ..errors import ToprecError
from ..io import atomic_dir, recover_swap

STATE_FILE = "state.safetensors"
META_FILE = "trainer.json"
#: parameters that do not change what a run computes (a checkpoint stays valid across them)
RUN_ONLY = {"epochs", "resume", "checkpoint_dir", "checkpoint_every", "device", "threads", "patience", "refit"}


def _json_safe(value: Any) -> Any:
    """NaN/inf floats become strings so the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _json_restore(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _json_restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_restore(v) for v in value]
    return value


def optimizer_state(opt, prefix: str) -> tuple[dict, dict]:
    """(tensors, json) for one optimizer: tensors keyed ``<prefix>.<param>.<key>``."""
    import torch

    sd = opt.state_dict()
    tensors: dict[str, Any] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{pid}.{key}"] = value.detach().to("cpu").clone().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_state(opt, prefix: str, tensors: dict, meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    head = prefix + "."
    for name, value in tensors.items():
        if name.startswith(head):
            pid, key = name[len(head) :].split(".", 1)
            state.setdefault(int(pid), {})[key] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save(directory: str | Path, tensors: dict, meta: dict) -> Path:
    """Write one checkpoint into ``directory/last`` atomically."""
    from safetensors.torch import save_file

    target = Path(directory) / "last"
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_dir(target) as tmp:
        save_file(clean, str(tmp / STATE_FILE))
        (tmp / META_FILE).write_text(json.dumps(_json_safe(meta), indent=1) + "\n")
    return target


def load(directory: str | Path) -> tuple[dict, dict] | None:
    """(tensors, meta) of the checkpoint in ``directory``, or None when there is none."""
    from safetensors.torch import load_file

    target = Path(directory) / "last"
    recover_swap(target)  # a kill between the two renames of a save: the previous checkpoint, put back
    meta_path = target / META_FILE
    if not meta_path.exists():
        return None
    try:
        meta = _json_restore(json.loads(meta_path.read_text()))
    except json.JSONDecodeError as exc:
        raise ToprecError(f"{meta_path}: invalid checkpoint JSON ({exc.msg}){_FIX}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ToprecError(f"{meta_path}: unreadable checkpoint ({exc}){_FIX}") from None
    _check_meta(meta_path, meta)
    state_path = target / STATE_FILE
    if not state_path.exists():
        raise ToprecError(f"{target}: checkpoint has {META_FILE} but no {STATE_FILE}{_FIX}")
    try:
        tensors = load_file(str(state_path))
    except Exception as exc:  # noqa: BLE001 - safetensors' error for a truncated or damaged file
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ToprecError(f"{state_path}: damaged checkpoint ({first}){_FIX}") from None
    return tensors, meta


_FIX = "; remove the checkpoint folder or set resume=False"
#: the keys :func:`write` puts in trainer.json and their types
_META_TYPES = {"fingerprint": dict, "phase": str, "epoch": int, "best_epoch": int, "best_metric": (int, float),
               "history": list, "optimizers": dict}  # fmt: skip


def _check_meta(meta_path: Path, meta: Any) -> None:
    if not isinstance(meta, dict):
        raise ToprecError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}{_FIX}")
    for key, kind in _META_TYPES.items():
        if key not in meta:
            raise ToprecError(f"{meta_path}: missing key '{key}'{_FIX}")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise ToprecError(f"{meta_path}: key '{key}' has the wrong type ({type(meta[key]).__name__}){_FIX}")


def fingerprint(model, phase: str, X) -> dict:
    """What a checkpoint must match to be resumed: model, phase, parameters (but :data:`RUN_ONLY`), data shape."""
    params = {k: v for k, v in model.params.model_dump(mode="json").items() if k not in RUN_ONLY}
    return {"model": model.name, "phase": phase, "params": params, "shape": list(X.shape), "nnz": int(X.nnz)}


def write(model, phase: str, fingerprint: dict, module, optimizers: dict, generator, epoch: int, best_epoch: int,
          best_metric: float, best_state: dict | None, done: bool) -> None:  # fmt: skip
    """Save a training run's whole state into ``model.params.checkpoint_dir``: module, best weights,
    optimizers, random generators, gradient scaler, loop counters and history."""
    torch = require_torch()
    tensors = {f"module.{k}": v for k, v in module.state_dict().items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v for k, v in best_state.items()})
    opt_meta = {}
    for name, opt in optimizers.items():
        t, m = optimizer_state(opt, f"opt.{name}")
        tensors.update(t)
        opt_meta[name] = m
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.generator"] = generator.get_state()
    if model.device_ == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    if model._scaler is not None:
        opt_meta["__scaler__"] = {k: (float(v) if hasattr(v, "item") else v) for k, v in model._scaler.state_dict().items()}
    meta = {
        "fingerprint": fingerprint,
        "phase": phase,
        "epoch": epoch,
        "done": done,
        "best_epoch": best_epoch,
        "best_metric": best_metric,
        "history": model.history,
        "optimizers": opt_meta,
        "saved_at": time.time(),
    }
    save(model.params.checkpoint_dir, tensors, meta)


def restore(model, module, optimizers: dict, generator, tensors: dict, meta: dict) -> dict | None:
    """Put a checkpoint's module, optimizer, generator and scaler states back; returns the best weights (or None)."""
    try:
        return _restore(model, module, optimizers, generator, tensors, meta)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ToprecError(f"{Path(model.params.checkpoint_dir) / 'last'}: checkpoint does not fit this run "
                          f"({first[:200]}){_FIX}") from None


def _restore(model, module, optimizers: dict, generator, tensors: dict, meta: dict) -> dict | None:
    torch = require_torch()
    module.load_state_dict({k[len("module.") :]: v for k, v in tensors.items() if k.startswith("module.")})
    for name, opt in optimizers.items():
        load_optimizer_state(opt, f"opt.{name}", tensors, meta["optimizers"][name])
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.generator"])
    if model.device_ == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    if model._scaler is not None and "__scaler__" in meta["optimizers"]:
        model._scaler.load_state_dict(meta["optimizers"]["__scaler__"])
    best = {k[len("best.") :]: v for k, v in tensors.items() if k.startswith("best.")}
    return {k: v.to(model.device_) for k, v in best.items()} or None
