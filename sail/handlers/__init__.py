"""Message handlers of the bridge, one module per family of subjects.

Every module in this package is imported by :func:`sail.registry.discover`, so a new
module that registers its kinds is picked up without touching the bridge.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
