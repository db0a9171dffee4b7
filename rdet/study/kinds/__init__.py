"""The built-in study task kinds; importing this package imports each of its modules, which
register their kinds (``rdet.study.base.register_kind``); the expansion order is each kind's ``order``.

``python -m rdet study --kinds`` lists them, read from the registry (``rdet.study.base.kinds_table``).
"""
import importlib
import pkgutil

# Every module of this package is imported, so a new kind is one new module here and nothing else.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
