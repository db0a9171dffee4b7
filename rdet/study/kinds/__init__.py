"""The built-in study task kinds; importing this package registers them (``rdet.study.base``).

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
from rdet.study.kinds import commands, detection, pretrain, robustness, select, transfer  # noqa: F401  (registration)
