"""The model registry: ``get(name, **params)``, ``list()``."""

from __future__ import annotations

from typing import Any

from ..errors import ToprecError

_REGISTRY: dict[str, type] = {}


def register(cls):
    """Class decorator: make a model available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


_NOT_MODELS = {"base", "registry", "linalg"}


def _ensure_loaded() -> None:
    """Import every model module of this folder once; models register themselves on import.

    A plugin lookup: the modules are found with :mod:`pkgutil` in this file's
    own folder and imported by name, so the registry never imports the
    ``models`` package (whose ``__init__`` imports the registry).
    """
    if _REGISTRY.get("__loaded__"):
        return
    import importlib
    import pkgutil
    from pathlib import Path

    package = __name__.rpartition(".")[0]
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name not in _NOT_MODELS and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    _REGISTRY["__loaded__"] = True  # type: ignore[assignment]


def get_class(name: str) -> type:
    _ensure_loaded()
    key = name.strip().lower()
    if key not in _REGISTRY or key == "__loaded__":
        known = sorted(n for n in _REGISTRY if n != "__loaded__")
        raise ToprecError(f"unknown model '{name}' (choose from {', '.join(known)})")
    return _REGISTRY[key]


def get(name: str, **params: Any):
    """A new, unfitted model: ``get("ease", l2=500)``."""
    return get_class(name)(**params)


def list() -> dict[str, dict[str, Any]]:  # noqa: A001 - mirrors the design's models.list()
    """Every registered model with its parameters: {name: {param: (type, default, doc)}}."""
    _ensure_loaded()
    out = {}
    for name in sorted(n for n in _REGISTRY if n != "__loaded__"):
        cls = _REGISTRY[name]
        fields = {}
        for pname, f in cls.Params.model_fields.items():
            ann = getattr(f.annotation, "__name__", str(f.annotation))
            fields[pname] = {"type": ann, "default": f.default, "doc": f.description or ""}
        out[name] = {"doc": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "", "params": fields}
    return out


def parse_params(name: str, pairs: "list[str] | None") -> dict[str, Any]:
    """``["l2=500", "k=50"]`` -> {"l2": "500", "k": "50"}; pydantic converts the types."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ToprecError(f"model '{name}': parameter '{pair}' is not key=value")
        key, value = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key:
            raise ToprecError(f"model '{name}': parameter '{pair}' has an empty name")
        out[key] = value.strip()
    return out
