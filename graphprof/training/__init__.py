"""The train stage: targets, seeded splits and metrics (``evaluate.py``), model fitting per target x model x seed
(``train.py``), and the checkpoints that let an interrupted run resume (``checkpoints.py``).

The registries the command line offers as choices live here, so ``graphprof --help`` reads them without
importing the stage.
"""

#: the models ``train`` fits when none are named: the baseline and the graph model that is, on every data set in
#: benchmarks/RESULTS.md, at least as accurate as sage and gat in less CPU time (docs/models.md, "The default")
DEFAULT_MODELS = ("lr", "sign")
#: transductive: the whole graph is seen while fitting, test labels hidden; inductive: test users removed
PROTOCOLS = ("transductive", "inductive")
