"""``forget``: erase users from every artifact of the work directory (a data-subject erasure request).

``forget(workdir, ["C0042", ...])`` removes the users' rows from the validated tables and the rejects, rebuilds
the graph from the remaining tables, recomputes the features in the *saved* feature space (the fitted SVD
components, category columns and recency reference are reused, so the trained models still read what they were
trained on), and drops the users' rows from every derived artifact:

========================================  ====================================================================
artifact                                  what happens
========================================  ====================================================================
``tables/{purchases,friendships,users}``  every row naming an erased user (both ends of a tie) is dropped
``rejects/<table>.csv``                   rows whose ``value`` is an erased id, or one end of a tie ``"a,b"``
``graph/``, ``tables/ids/``               rebuilt from the remaining tables; the manifest's ``graph_id`` moves
``features/``                             recomputed with the saved state (the state itself is unchanged)
``models/<target>/<model>/``              ``predictions.parquet`` rows dropped; ``config.json`` gets
                                          ``needs_retraining: true`` and a reason; the weights stay usable
``models/_lightgcn/``                     the erased users' rows of the ``users`` array dropped; marked, and
                                          refitted by the next ``export-embeddings``
``communities/<method>/``                 assignments rows dropped (labels not renumbered, so models trained
                                          on them still apply); profiles and summary recomputed on the new graph
``embeddings/``                           rows dropped from users.parquet / .npy / _ids.csv; a pseudonymised
                                          export is matched with the key, or deleted when no key is given
``predictions/new_users.parquet``         rows dropped
``.partial-train/``                       deleted (checkpoints fitted with the erased users; unresumable)
``report.html``                           deleted (its plots and tables may show erased users)
========================================  ====================================================================

Users known *only* through a tie to an erased user leave the graph too (as a fresh build without the erased
users' rows would have it), and their rows go from every graph-ordered artifact; they are counted, not erased
from the rejects. ``manifest.json`` records each erasure under ``erasures`` with the time, the counts and the
artifacts touched, never the ids nor any hash of them (a plain hash of an id is the id, for anyone holding a list
of candidate ids). Everything is computed in memory first and then written file by file atomically; an
interrupted run can be repeated with the same ids and finishes the job (the ids are still found where they are
left).

Not touched: the input files (outside the work directory: remove the users there too) and copies written
outside the work directory with ``--out``.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from graphprof import workdir
from graphprof.errors import ConfigError, InputError
from graphprof.privacy.erasure import ErasurePlan

log = logging.getLogger("graphprof")


@dataclass
class ForgetResult:
    """What ``forget`` erased and where.

    Attributes:
        erased: how many of the requested ids were found and erased.
        unknown_ids: requested ids found in no artifact (reported, not an error unless no id was known).
        rows_removed: rows dropped per file (relative path -> count).
        users_removed: users the graph lost: the erased ones plus ``orphaned`` (known only through a tie to an
            erased user).
        graph: node and edge counts of the new graph (:func:`graphprof.graph.describe`).
        artifacts: relative path -> what was done (``filtered``, ``recomputed``, ``rebuilt``, ``marked``,
            ``deleted``).
        needs_retraining: ``target/model`` of every model now marked (``_lightgcn`` for the embedding model).
        erased_ids: the erased ids, for the caller only: never written to the work directory nor to JSON.
    """

    workdir: Path
    requested: int
    erased: int
    unknown_ids: list[str]
    rows_removed: dict[str, int] = field(default_factory=dict)
    users_removed: int = 0
    orphaned: int = 0
    graph: dict = field(default_factory=dict)
    graph_id: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    needs_retraining: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    erased_ids: list[str] = field(default_factory=list, repr=False)

    def summary_lines(self) -> list[str]:
        lines = [f"forget: erased {self.erased} of {self.requested} requested users from {self.workdir}/"]
        if self.unknown_ids:
            lines.append(f"  unknown ids (in no artifact, nothing to erase): {', '.join(self.unknown_ids)}")
        rows = ", ".join(f"{p} {n}" for p, n in self.rows_removed.items() if n)
        lines.append(f"  rows removed: {rows or 'none'}")
        if self.graph:
            users = self.graph["nodes"].get("user", 0)
            orphans = (f", {self.orphaned} of them known only through ties to the erased users"
                       if self.orphaned else "")
            lines.append(f"  graph: {users} users ({self.users_removed} fewer{orphans}); features recomputed in "
                         "the saved feature space")
        by_action: dict[str, list[str]] = {}
        for path, action in self.artifacts.items():
            by_action.setdefault(action, []).append(path)
        lines.extend(f"  {action}: {', '.join(paths)}" for action, paths in by_action.items())
        if self.needs_retraining:
            lines.append(f"  needs retraining (fitted with the erased users): {', '.join(self.needs_retraining)}; "
                         "run 'graphprof train' (and 'graphprof export-embeddings')")
        lines.extend(f"  note: {n}" for n in self.notes)
        return lines

    def to_json(self) -> dict:
        """Counts, unknown ids, what was done; the erased ids are left out on purpose."""
        return {"workdir": str(self.workdir), "requested": self.requested, "erased": self.erased,
                "unknown_ids": self.unknown_ids, "rows_removed": self.rows_removed,
                "users_removed": self.users_removed, "orphaned": self.orphaned, "graph": self.graph,
                "graph_id": self.graph_id, "artifacts": self.artifacts, "needs_retraining": self.needs_retraining,
                "notes": self.notes, "seconds": self.seconds}


# --------------------------------------------------------------------------------------------- the ids
def read_forget_file(path: str | Path) -> list[str]:
    """User ids from ``path``: one id per line (blank lines ignored; a first line ``user_id`` is a header), or a
    CSV / TSV with a ``user_id`` column (delimiter ``,`` ``;`` tab or ``|``, sniffed from the header).

    Raises:
        InputError: the file is missing, unreadable, not UTF-8, a CSV without a ``user_id`` column, or names
            no id.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: the forget file must exist. Got no such file", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"{path}: the forget file must be readable. Got: {exc}", path=str(path)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InputError(f"{path}: must be UTF-8 text. Got a byte that is not on line {line}", path=str(path),
                         row=line) from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), None)
    if first is None:
        raise InputError(f"{path}: must name at least one user id (one per line, or a CSV with a user_id column). "
                         "Got an empty file", path=str(path))
    delim = next((d for d in (",", ";", "\t", "|") if d in first), None)
    if delim is None:
        ids = [ln.strip() for ln in lines if ln.strip()]
        if ids and ids[0] == "user_id":
            ids = ids[1:]
    else:
        header = [c.strip().strip('"') for c in first.split(delim)]
        if "user_id" not in header:
            raise InputError(f"{path}: a forget file with several columns must have a 'user_id' column (found: "
                             f"{', '.join(header)})", path=str(path), row=1, column="user_id")
        try:
            frame = pd.read_csv(io.StringIO(text), sep=delim, dtype=str, keep_default_na=False,
                                skip_blank_lines=True)
        except (pd.errors.ParserError, ValueError) as exc:
            raise InputError(f"{path}: must be a well-formed CSV. Got: {exc}", path=str(path)) from None
        ids = [s.strip() for s in frame["user_id"].astype(str) if s.strip()]
    if not ids:
        raise InputError(f"{path}: must name at least one user id. Got none", path=str(path))
    return ids


def _requested(user_ids: list[str] | None, forget_file: str | Path | None) -> list[str]:
    ids = [str(u).strip() for u in (user_ids or [])]
    if any(not u for u in ids):
        raise ConfigError("user ids must be non-empty. Got an empty id")
    if forget_file is not None:
        ids += read_forget_file(forget_file)
    if not ids:
        raise ConfigError("forget needs at least one user id (USER_ID... or --forget-file FILE). Got none")
    return list(dict.fromkeys(ids))


# ------------------------------------------------------------------------------------------- the stage
def forget(workdir_path: str | Path = workdir.DEFAULT_WORKDIR, user_ids: list[str] | None = None,
           forget_file: str | Path | None = None, *, key_file: str | Path | None = None) -> ForgetResult:
    """Erase ``user_ids`` (and the ids in ``forget_file``) from every artifact of the work directory.

    Args:
        user_ids: the users' own ids, as in the input tables.
        forget_file: one id per line, or a CSV with a ``user_id`` column (see :func:`read_forget_file`).
        key_file: the pseudonymisation key of a pseudonymised embeddings export (else ``$GRAPHPROF_PSEUDONYM_KEY``);
            with neither, a pseudonymised export cannot be matched and is deleted.

    Returns:
        ForgetResult: counts, unknown ids, the artifacts touched and the models to retrain.

    Raises:
        ConfigError: no id given, or none of the ids is known to the work directory; a bad or wrong key.
        InputError: a bad ``forget_file``.
        ArtifactError: no graph (run ``build-graph`` first), or damaged artifacts.
    """
    t0 = time.perf_counter()
    root = Path(workdir_path)
    requested = _requested(user_ids, forget_file)
    manifest = workdir.require_built(root)
    with workdir.locked(root, "forget"):
        plan = ErasurePlan(root, manifest, set(requested), key_file)
        plan.read()
        unknown = [u for u in requested if u not in plan.known]
        if not plan.known:
            shown = ", ".join(requested[:10]) + (f" and {len(requested) - 10} more" if len(requested) > 10 else "")
            raise ConfigError(f"forget: the user ids must name at least one user of {root}/. Got only unknown ids "
                              f"({shown}); nothing was changed")
        plan.compute()
        plan.write()
        result = ForgetResult(workdir=root, requested=len(requested), erased=len(plan.known), unknown_ids=unknown,
                              rows_removed=plan.rows_removed, users_removed=plan.users_removed,
                              orphaned=plan.orphaned, graph=plan.graph_info, graph_id=plan.new_graph_id,
                              artifacts=plan.artifacts, needs_retraining=plan.needs_retraining, notes=plan.notes,
                              seconds=time.perf_counter() - t0,
                              erased_ids=[u for u in requested if u in plan.known])
    log.info("forget: erased %d users (%d unknown ids)", result.erased, len(unknown))
    return result


__all__ = ["ForgetResult", "forget", "read_forget_file"]
