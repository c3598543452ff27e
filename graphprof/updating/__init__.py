"""The update stage: new events applied to a built work directory without a rebuild (``graphprof update``).

``stage.py`` is the command (read, validate, journal, apply whole); ``merge.py`` merges the batch into the graph
and tables; ``refeature.py`` recomputes the touched users' features; ``rescore.py`` re-scores the saved models and
assigns new users' communities; ``drift.py`` measures how far the features moved since training.
"""

__all__ = ["UpdateResult", "update"]


def __getattr__(name):  # the stage imports the graph and feature code: only when asked for
    if name in __all__:
        from graphprof.updating import stage

        return getattr(stage, name)
    raise AttributeError(name)
