"""Model families, one file each.

Every module of this package is imported here, so a new model is one new file with an
``@register("name")`` class: nothing else needs editing. Public classes are re-exported.
"""

import importlib
import pkgutil

from aekit._registry import MODELS

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

globals().update({cls.__name__: cls for cls in map(MODELS.lookup, MODELS.names())})
__all__ = sorted(cls.__name__ for cls in map(MODELS.lookup, MODELS.names()))
