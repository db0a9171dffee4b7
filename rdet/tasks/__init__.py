"""The classification tasks' runs: pretraining (``pretrain``), transfer (``transfer``) and robust
evaluation (``robustness``), each ``run(cfg) -> record``, and the checks they share before a run
(``checks``). Submodules are imported by name so that importing one task loads no other."""
