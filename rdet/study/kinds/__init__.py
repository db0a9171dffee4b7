"""The built-in study task kinds; importing this package imports each of its modules, which
register their kinds (``rdet.study.base.register_kind``); the expansion order is each kind's ``order``.

=============  ==================  ==========================================================
section        kinds (Cell.kind)   module
=============  ==================  ==========================================================
commands       command             :mod:`rdet.study.kinds.commands`
pretrain       pretrain            :mod:`rdet.study.kinds.pretrain` (provides backbones)
backbones      (none)              :mod:`rdet.study.kinds.pretrain` (provides backbones)
classification classify            :mod:`rdet.study.kinds.transfer`
detection      convert, detect     :mod:`rdet.study.kinds.detection` (COCO 1x -> 3x follow-ups)
select         select              :mod:`rdet.study.kinds.select`
robustness     robustness          :mod:`rdet.study.kinds.robustness` (PGD, AutoAttack)
=============  ==================  ==========================================================
"""
import importlib
import pkgutil

# Every module of this package is imported, so a new kind is one new module here (and a row above).
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
