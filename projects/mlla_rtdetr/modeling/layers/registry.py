"""Registries of interchangeable blocks, on fvcore's :class:`fvcore.common.registry.Registry`."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional

from fvcore.common.registry import Registry as _FvcoreRegistry

__all__ = ["Registry"]


class Registry(_FvcoreRegistry):
    """fvcore's registry, plus registration under a chosen name and a lookup error that lists
    the registered names (configs select blocks by short names such as ``"mlla"``)::

        INTRA_SCALE_BLOCKS = Registry("INTRA_SCALE_BLOCKS")

        @INTRA_SCALE_BLOCKS.register("mlla")
        def build_mlla_intra_scale(...): ...
    """

    def register(self, name: Optional[Any] = None) -> Any:  # type: ignore[override]
        """``@register()`` / ``@register("name")`` as decorators, or ``register(obj)`` (fvcore's
        form, registered under ``obj.__name__``)."""
        if name is None or isinstance(name, str):
            def decorator(obj: Callable) -> Callable:
                self._do_register(name or obj.__name__, obj)
                return obj

            return decorator
        return super().register(name)

    def get(self, name: str) -> Any:
        if name not in self:
            raise KeyError(
                f"Unknown {self._name} entry '{name}'. Registered: {sorted(self._obj_map)}. "
                "Entries register themselves when their module is imported."
            )
        return super().get(name)

    def names(self):
        return sorted(self._obj_map)

    def build(self, spec: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the entry named by ``spec``: a registered name, or a mapping ``{"name": name,
        **cfg}`` whose other items are extra keyword arguments (configs select and configure a
        block in one value: ``"mlla"`` or ``{"name": "mlla", "num_layers": 1}``)."""
        if isinstance(spec, str):
            return self.get(spec)(*args, **kwargs)
        if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
            cfg = {str(k): v for k, v in spec.items() if k != "name"}
            return self.get(spec["name"])(*args, **kwargs, **cfg)
        raise ValueError(
            f"A {self._name} entry is a registered name or a mapping with a 'name' key, got {spec!r}. "
            f"Registered: {sorted(self._obj_map)}."
        )
