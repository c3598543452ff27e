"""``sign``: SIGN-style precomputed neighbourhood aggregates + a mini-batch MLP (no message passing to train).

In the spirit of SIGN (Frasca et al. 2020) and NARS (Yu et al. 2020): the graph is used once, up front, to
compute per relation and hop an aggregate of the users' inputs with ``scipy.sparse`` products; training is then
an inception-style MLP over independent mini-batches of users, so its cost grows with the number of labelled
users, not with the graph, and nothing but a batch's rows is touched per step.

**Inputs per user** ``X = [F, T]``:

- ``F``: the label-free user features (``inputs.features.matrix``: behaviour, category mix, 32-dim item SVD,
  social statistics), standardised with training-user statistics.
- ``T``: the bag of items, kept **sparse**: the user x item matrix ``log(1 + count) * idf`` (idf fitted label-free
  on all users in ``fit``), L2-normalised per row. On real data (Deezer Europe: which artists a user liked) item
  identity carries most of the signal and a low-rank SVD loses part of it (on Deezer, logistic regression
  scores a higher test AUC on the TF-IDF bag itself than on 128 SVD components, and higher still with the
  friends' bags added). The block's linear layer over ``T`` is a ``torch.nn.EmbeddingBag`` (the sum of the
  user's item vectors weighted by ``T``'s row), i.e. exactly a dense linear layer on the sparse bag: a learned
  item embedding, with no SVD to fit (slow on large item sets) and no item lost.

**Blocks** (each its own linear layer + ReLU; concatenated, then the MLP head), with ``A`` the row-normalised
(weighted) friend adjacency and ``C = P_n P_nᵀ`` the co-purchase relation (user -> item -> user, ``P_n`` and
``P_nᵀ`` the row-normalised purchase matrix and its transpose, applied as two sparse products: the user x user
matrix is never formed):

- ``own``: ``[F, T]``: the user's own features, never mixed with anyone else's (on Deezer gender friends are
  nearly a coin flip, edge homophily 0.525).
- ``social_k`` for ``k = 1..hops``: ``[A^k F, topk(A topk(A ... T))]``: the friends' features and their bag of
  items. ``A^k T`` fills in quickly (on Deezer ``A² T`` holds 48 M non-zeros), so each hop keeps the
  ``top_k`` largest entries per row: memory ``O(users * top_k)`` per block whatever the degree.
  Only where the graph has friendships when the model is fitted.
- ``copurchase``: ``C F`` without the user's own term (the ``u -> i -> u`` paths are taken out and the rest
  re-normalised): the average profile of the users who bought the same items. ``C T`` would be nearly dense
  (an item x item co-occurrence), so this block is dense only (``F`` already holds a 32-dim item SVD).

Dense aggregates are standardised with training-user statistics (clipped to ±6, as ``sage``). Each bag also has
a *wide* linear term straight to the logits (wide & deep, Cheng et al. 2016): the logistic regression on the
bags that is strong on Deezer, learned jointly with the MLP (which adds to the MLP's test AUC there); in
training a bag's entries are dropped at random (``item_dropout``) on the MLP path.

Training: class-balanced cross-entropy, Adam, shuffled mini-batches (a seeded ``torch.Generator``; at least 8
steps an epoch on small training sets), early stopping on validation macro-F1. A small grid is searched on the
validation users only: ``block_sets`` (``"all"`` blocks, or ``"own"`` alone: which one SIGN's number of hops
``r = 0`` is; it wins where a trait is personal and the neighbourhood only adds noise, as ``spend_level`` on
the bundled sample) x ``hidden_grid`` x ``dropout_grid``, by successive halving (every point trains
:data:`~graphprof.models.search.ROUND_EPOCHS` epochs, the better half goes on, the last one trains to its early stop; each point from
its own random state, so the winner is the model its point alone gives); the choice and the search are kept
in ``choice_`` (and the saved config), and only the chosen blocks are kept. Everything fitted (``F``'s statistics, idf, the blocks'
statistics, the weights) is saved, and the blocks are recomputed from the inputs at prediction time, so the
model predicts on a graph with more users than it was fitted on (``graphprof predict``) in the same space.
``predict_proba(inputs, rows=...)`` computes the blocks of the given rows only, on their neighbourhood (the
``hops``-hop ball; the co-purchase block reads one item-level product over every purchase): the same numbers as
the whole-graph call's rows.

**Data parallel** (inside an initialised ``torch.distributed`` process group of more than one process:
``graphprof train --nproc N`` or ``torchrun``): every rank computes the same blocks from the same files (past
the row-block setting: rank 0 writes them once and every rank maps its files) and draws the same epoch
permutation; each mini-batch of ``batch`` users is split into one contiguous shard per
rank (``batch / world_size`` users each, so the effective batch and the number of steps are those of one
process), the MLP is wrapped in ``DistributedDataParallel`` and each rank's loss is its shard's share of the
whole batch's class-weighted loss, so the averaged gradient is the one process's gradient on that batch (up to
float summation order and dropout masks, which differ per rank). Validation runs on every rank; rank 0's
macro-F1 is broadcast so early stopping and the grid choice are the same on every rank. With one process none of
this runs (plain training); ``world_size`` is kept in the saved config.

Shapes: ``F`` ``[num_users, num_features]``; ``T`` and the sparse hops ``[num_users, num_items]`` (CSR); logits
``[num_users, n_classes]``; embeddings ``[num_users, hidden * n_blocks]`` (the blocks' outputs, which the head
reads).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from graphprof.errors import ConfigError
from graphprof.graph import FRIEND
from graphprof.models.bag import fit_idf
from graphprof.models.base import Model, ModelInput, macro_f1
from graphprof.models.blend import BlendWithBaseline
from graphprof.models.ops import adam
from graphprof.models.search import ROUND_EPOCHS, GridRun, successive_halving
from graphprof.models.sign import store
from graphprof.models.sign.blocks import SIGNBlocks, standardize, stats
from graphprof.models.sign.net import SIGNNet
from graphprof.runtime import distributed as parallel
from graphprof.runtime import memory, progress

log = logging.getLogger("graphprof")

EVAL_BATCH = 8192
MIN_STEPS = 8  # optimiser steps per epoch, at least (smaller batches on small training sets)
MIN_BATCH = 32
BLOCK_SETS = ("all", "own")
#: From this many training users on, ``sign`` takes its large-graph route: only the first point of each grid
#: (``block_sets[0]``, ``hidden_grid[0]``, ``dropout_grid[0]``) and 4x the batch. With 100k+ training users one
#: grid point is well determined on validation, and searching the whole grid would multiply the training time
#: by the grid's size.
LARGE_TRAIN_USERS = 100_000


# -------------------------------------------------------------------------------------------------- model
class SIGN(SIGNBlocks, BlendWithBaseline, Model):
    """SIGN-style classifier over precomputed per-relation, per-hop aggregates (see the module docstring).

    Args:
        hops: social hops (``A F``, ``A² F``, ...). top_k: non-zeros kept per row of each sparse social hop.
        copurchase: add the co-purchase block.
        block_sets, hidden_grid, dropout_grid: the grid searched on validation macro-F1; ``block_sets`` holds
            ``"all"`` (every block) and / or ``"own"`` (the user's own block alone).
        lr, weight_decay: Adam settings. batch_size: users per step (smaller where the training users would
            make fewer than 8 steps an epoch). epochs: maximum epochs per grid point. patience: epochs without a
            better validation macro-F1 before stopping. item_dropout: share of a bag's entries dropped in
            training. wide: add the bags' linear terms to the logits. blend: on the grid route, average the
            net's probabilities with those of an ``lr`` fitted on the same users, the net's weight chosen on
            validation (:mod:`graphprof.models.blend`).

    Raises (in ``fit``):
        ConfigError: a ``block_sets`` entry other than ``"all"`` / ``"own"``, or an empty grid.
    """

    name = "sign"
    distributed = True  # graphprof.train: every rank fits it, data parallel (see the module docstring)

    def __init__(self, seed: int = 0, hops: int = 2, top_k: int = 128, copurchase: bool = True,
                 block_sets: tuple[str, ...] = ("all", "own"), hidden_grid: tuple[int, ...] = (64,),
                 dropout_grid: tuple[float, ...] = (0.3, 0.5), lr: float = 0.003, weight_decay: float = 1e-4,
                 batch_size: int = 1024, epochs: int = 60, patience: int = 6, item_dropout: float = 0.3,
                 wide: bool = True, blend: bool = True):
        super().__init__(seed=seed, hops=hops, top_k=top_k, copurchase=copurchase, block_sets=list(block_sets),
                         hidden_grid=list(hidden_grid), dropout_grid=list(dropout_grid), lr=lr,
                         weight_decay=weight_decay, batch_size=batch_size, epochs=epochs, patience=patience,
                         item_dropout=item_dropout, wide=wide, blend=blend)

    # -------------------------------------------------------------------------------------------- blocks
    def _blocks(self, inputs: ModelInput, raw: tuple | None = None) -> tuple[list[torch.Tensor], list]:
        """The standardised dense parts as float32 tensors, and the sparse parts (``raw``: ``_raw_blocks``'s
        output where already computed)."""
        names, dense, bags = raw if raw is not None else self._raw_blocks(inputs)
        if names != self.block_names_:
            raise ValueError(f"sign: blocks must be {self.block_names_}. Got {names} instead")  # an invariant
        dense = [d if b == 0 else standardize(d, *self.block_stats_[b - 1]) for b, d in enumerate(dense)]
        return [torch.from_numpy(d.astype(np.float32)) for d in dense], bags

    def _run(self, net: SIGNNet, source, rows: np.ndarray, part: int | None = None):
        """Logits and block outputs of the graph rows ``rows`` of ``source`` (:mod:`graphprof.models.sign.store`);
        with ``part``, that one of the two only (the other is never collected)."""
        net.eval()
        outs = ([], [])
        with torch.no_grad():
            for s in range(0, len(rows), EVAL_BATCH):
                for k, out in enumerate(net(*source.batch(rows[s:s + EVAL_BATCH]))):
                    if part is None or k == part:
                        outs[k].append(out)
        empty = (torch.zeros(0, len(self.classes_)), torch.zeros(0, net.head[0].in_features))
        both = tuple(torch.cat(o) if o else empty[k] for k, o in enumerate(outs))
        return both if part is None else both[part]

    # ------------------------------------------------------------------------------------------ training
    def _fit(self, inputs: ModelInput, y, train_idx, val_idx) -> None:
        p = self.params
        unknown = [b for b in p["block_sets"] if b not in BLOCK_SETS]
        if unknown or not (p["block_sets"] and p["hidden_grid"] and p["dropout_grid"]):
            raise ConfigError(f"sign: block_sets must name {' / '.join(BLOCK_SETS)} and every grid must be "
                              f"non-empty. Got block_sets={p['block_sets']}, hidden_grid={p['hidden_grid']}, "
                              f"dropout_grid={p['dropout_grid']} instead")
        g = inputs.graph
        x = inputs.features.matrix
        self.f_mean_, self.f_std_ = stats(x[train_idx])
        counts = g.purchase_matrix("count").tocsr()
        self.n_items_ = int(counts.shape[1])
        self.idf_ = fit_idf(counts)  # label-free: over all users
        self.world_size_ = parallel.world_size() if parallel.active() else 1
        # whether the graph has ties, from their count: the adjacency itself is GiBs at millions of users
        self.social_ = bool(FRIEND in g.edge_types and g.edge(FRIEND).shape[1] > 0 and self.params["hops"] > 0)
        self.copurchase_ = bool(self.params["copurchase"] and counts.nnz > 0)
        del counts
        self.route_ = "large" if len(train_idx) >= LARGE_TRAIN_USERS else "grid"
        with store.scratch_dir(inputs) as scratch:
            self._fit_on(self._sources(inputs, train_idx, val_idx, scratch), inputs, y, train_idx, val_idx)
            if parallel.active():  # rank 0's files stay until every rank is done reading them
                parallel.barrier()

    def _sources(self, inputs: ModelInput, train_idx, val_idx, scratch):
        """The blocks the fit reads (:mod:`graphprof.models.sign.store`): every user's in memory, or past the
        row-block setting the training and validation users' in memory-mapped files under ``scratch``. Sets
        ``block_names_`` and ``block_stats_`` (the dense parts' training-user statistics)."""
        per_block = store.block_rows(inputs)
        if inputs.graph.num_users <= per_block:
            raw = self._raw_blocks(inputs)
            self.block_names_ = raw[0]
            self.block_stats_ = [stats(d[train_idx]) for d in raw[1][1:]]
            return store.HeldBlocks(*self._blocks(inputs, raw))
        log.info("sign: %d users: blocks of the %d training and validation users written %d at a time to "
                 "memory-mapped files", inputs.graph.num_users, len(train_idx) + len(val_idx), per_block)
        rows = np.union1d(train_idx, val_idx)
        if not parallel.active() or parallel.world_size() == 1:
            self.block_names_, source = store.write_blocks(self, inputs, rows, scratch, per_block,
                                                           self._kept_shared(inputs, per_block))
        else:  # data parallel: rank 0 writes the files once; every rank maps them and reads its share of a batch
            written = {}

            def write() -> dict:
                written["names"], written["source"] = store.write_blocks(self, inputs, rows, scratch, per_block,
                                                                         self._kept_shared(inputs, per_block))
                return {"names": written["names"], "path": str(scratch), "dims": written["source"].dims,
                        "sparse": written["source"].sparse}

            doc = parallel.on_main(write)
            self.block_names_ = doc["names"]
            source = written.get("source") or store.StoredBlocks(Path(doc["path"]), rows, doc["dims"], doc["sparse"],
                                                                 self.n_items_, page_rows=per_block)
        self.block_stats_ = [stats(source.raw(b, train_idx)) for b in range(1, len(self.block_names_))]
        source.stats = [None, *self.block_stats_]
        source.release()
        return source

    def _fit_on(self, source, inputs: ModelInput, y, train_idx, val_idx) -> None:
        """The grid search and the chosen net, on the blocks ``source``."""
        p = self.params
        self.dense_dims_ = source.dims
        self.sparse_ = source.sparse
        grids = {k: p[k][:1] if self.route_ == "large" else p[k] for k in ("block_sets", "hidden_grid", "dropout_grid")}
        if self.route_ == "large":
            log.info("sign: %d training users: large-graph route (one grid point, batch %d)", len(train_idx),
                     4 * p["batch_size"])
        points, tried = [], set()
        for block_set in grids["block_sets"]:
            keep = [0] if block_set == "own" else list(range(len(self.block_names_)))
            if tuple(keep) in tried:  # no neighbourhood blocks on this graph: "all" is "own"
                continue
            tried.add(tuple(keep))
            points += [(block_set, keep, hidden, dropout) for hidden in grids["hidden_grid"]
                       for dropout in grids["dropout_grid"]]
        runs = [self._start_run(point, source, y, train_idx, val_idx) for point in points]
        winner = successive_halving(runs)
        block_set, keep, hidden, dropout = winner.point
        f1, self.best_epoch_, state, self.history_ = winner.best_f1, winner.best_epoch, winner.best_state, winner.history
        grid = [{"blocks": r.point[0], "hidden": r.point[2], "dropout": r.point[3], "val_macro_f1": r.best_f1,
                 "best_epoch": r.best_epoch, "epochs": len(r.history)} for r in runs]
        self.choice_ = {"blocks": block_set, "hidden": hidden, "dropout": dropout, "val_macro_f1": f1,
                        "grid": grid, "search": {"method": "successive halving", "round_epochs": ROUND_EPOCHS}}
        # keep only the chosen blocks: prediction computes just those
        chosen = [self.block_names_[b] for b in keep]
        self.social_ = self.social_ and any(n.startswith("social_") for n in chosen)
        self.copurchase_ = self.copurchase_ and "copurchase" in chosen
        self.block_names_ = chosen
        self.block_stats_ = [self.block_stats_[b - 1] for b in keep[1:]]
        self.dense_dims_ = [self.dense_dims_[b] for b in keep]
        self.sparse_ = [self.sparse_[b] for b in keep]
        self.net_ = self._new_net(hidden, dropout, self.dense_dims_, self.sparse_)
        self.net_.load_state_dict(state)
        self.net_.eval()
        self.blend_, self.lr_ = None, None
        if p.get("blend", False) and self.route_ == "grid":
            net_val = self._run(self.net_, source.view(keep), val_idx, self.LOGITS)
            self._fit_blend(inputs, y, train_idx, val_idx, torch.softmax(net_val.double(), dim=1).numpy())

    def _new_net(self, hidden: int, dropout: float, dense_dims: list[int], sparse: list[bool]) -> SIGNNet:
        p = self.params
        return SIGNNet(dense_dims, sparse, self.n_items_, hidden, len(self.classes_), dropout,
                       item_dropout=p["item_dropout"], wide=p["wide"])

    def _start_run(self, point: tuple, source, y, train_idx, val_idx) -> GridRun:
        """One grid point ready to train: its net built under ``torch.manual_seed(seed)``, and the torch random
        state it continues from (each point's dropout draws are its own, however the search interleaves them)."""
        block_set, keep, hidden, dropout = point
        torch.manual_seed(self.seed)
        net = self._new_net(hidden, dropout, [self.dense_dims_[b] for b in keep], [self.sparse_[b] for b in keep])
        run = GridRun(point=point, net=net, rng=torch.get_rng_state())
        run.steps = self._epochs(run, source.view(keep), y, train_idx, val_idx)
        return run

    def _epochs(self, run: GridRun, source, y, train_idx, val_idx):
        """Train ``run``'s net epoch by epoch, keeping its best validation macro-F1, epoch, weights and history
        in ``run``; yields after each epoch, and ends at early stopping or the last epoch."""
        net = run.net
        p = self.params
        gen = torch.Generator().manual_seed(self.seed)
        opt = adam(net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        net.hold_item_grads()  # zeroed by the optimiser, not dropped
        n_classes = len(self.classes_)
        counts = np.bincount(y[train_idx], minlength=n_classes).astype(np.float64)
        weight = torch.tensor(len(train_idx) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)
        yt = torch.from_numpy(y.astype(np.int64))
        # at least MIN_STEPS steps an epoch: with a few hundred training users, one batch an epoch is too few
        size = p["batch_size"] * (4 if getattr(self, "route_", "grid") == "large" else 1)
        batch = int(min(size, max(MIN_BATCH, -(-len(train_idx) // MIN_STEPS))))
        bad, history = 0, run.history
        world = parallel.world_size() if parallel.active() else 1
        model = net
        if world > 1:  # rank 0's initial weights (the same anyway); gradients averaged over the ranks
            model = DistributedDataParallel(net, find_unused_parameters=False)
            if parallel.rank() > 0:  # other dropout masks than rank 0's on the other rows of the batch
                torch.manual_seed(self.seed + 7919 * parallel.rank())
        with progress.bar(total=p["epochs"], desc=self.name, unit="epoch", leave=False) as shown:
            for epoch in range(p["epochs"]):
                model.train()
                order = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
                total = 0.0
                for s in range(0, len(order), batch):
                    rows = order[s:s + batch]
                    if world == 1:
                        logits, _ = net(*source.batch(rows, train=True))
                        loss = F.cross_entropy(logits, yt[rows], weight=weight)
                        share = float(loss.detach()) * len(rows)
                    else:  # this rank's shard; its loss is its share of the batch's weighted mean, times world
                        mine = parallel.shard(rows)
                        logits, _ = model(*source.batch(mine, train=True))
                        part = F.cross_entropy(logits, yt[mine], weight=weight, reduction="sum")
                        denom = float(weight[yt[rows]].sum())
                        loss = part * (world / denom)
                        share = float(part.detach()) / denom * len(rows)
                    opt.zero_grad(set_to_none=False)
                    loss.backward()
                    opt.step()
                    total += share
                total = parallel.all_reduce_sum(total) if world > 1 else total
                logits = self._run(net, source, val_idx, self.LOGITS)
                val_f1 = macro_f1(y[val_idx], logits.argmax(1).numpy())
                if world > 1:
                    val_f1 = parallel.broadcast_float(val_f1)
                history.append({"epoch": epoch, "train_loss": total / max(len(order), 1), "val_macro_f1": val_f1})
                shown.set_postfix(val_f1=f"{val_f1:.3f}", refresh=False)
                shown.update()
                if val_f1 > run.best_f1:
                    run.best_f1, run.best_epoch, bad = val_f1, epoch, 0
                    run.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    bad += 1
                    if bad >= p["patience"]:
                        break
                yield

    # ---------------------------------------------------------------------------------------- inference
    #: which output of the net a scoring pass keeps: the logits, or the block outputs (the embeddings)
    LOGITS, EMBEDDINGS = 0, 1

    def _forward(self, inputs: ModelInput, part: int) -> torch.Tensor:
        """``part`` of every user's output (the other is dropped a row block at a time, never held for all)."""
        n = inputs.graph.num_users
        if n > store.block_rows(inputs):  # a row block at a time: the same numbers, to float rounding
            return self._forward_rows(inputs, np.arange(n), part)
        return self._run(self.net_, store.HeldBlocks(*self._blocks(inputs)), np.arange(n), part)

    def _proba(self, inputs: ModelInput) -> np.ndarray:
        net = torch.softmax(self._forward(inputs, self.LOGITS).double(), dim=1).numpy()
        return self._blended(net, lambda: self.lr_.proba(inputs))

    def _embed(self, inputs: ModelInput) -> np.ndarray:
        return self._forward(inputs, self.EMBEDDINGS).numpy().astype(np.float64)

    def _shared_blocks(self, inputs: ModelInput, path: Path, per_block: int):
        """:meth:`_shared` for row blocks that cover most users, with every user's lower social hops in files under
        ``path`` (:func:`store.write_layers`)."""
        shared = self._shared(inputs)
        memory.trim()  # the whole-graph products' temporaries: not the level every row block starts from
        if self.social_ and self.params["hops"]:
            shared = shared._replace(layers=store.write_layers(self, inputs, shared, path, per_block))
        return shared

    def _kept_shared(self, inputs: ModelInput, per_block: int | None = None):
        """:meth:`_shared_blocks` on ``inputs`` with every user's hops kept from the fit, with their files, for
        the scoring of every user that follows it (``train``), until :meth:`release_working_files`. The rest of
        it (counts, adjacency, item profile) is made again: held through the epochs it would sit beside the
        net. ``per_block`` None: None where no hops are kept; else the hops are made and kept where none are."""
        kept = self.__dict__.get("_kept")
        if kept is not None and kept["graph"] is inputs.graph and kept["features"] is inputs.features:
            return self._shared(inputs)._replace(layers=kept["layers"])
        if per_block is None:
            return None
        self.release_working_files()
        path = store.new_scratch(inputs, prefix="sign-hops-")
        cleanup = weakref.finalize(self, shutil.rmtree, path, True)  # also where the model is dropped unreleased
        try:
            shared = self._shared_blocks(inputs, path, per_block)
        except BaseException:
            cleanup()
            raise
        self._kept = {"graph": inputs.graph, "features": inputs.features, "layers": shared.layers,
                      "cleanup": cleanup}
        return shared

    def release_working_files(self) -> None:
        kept = self.__dict__.pop("_kept", None)
        if kept is not None:
            kept["cleanup"]()

    def _forward_blocks(self, inputs: ModelInput, rows: np.ndarray, per_block: int, part: int):
        """``part`` of the output of ``rows``, ``per_block`` rows at a time (one row block: its blocks computed on
        its neighbourhood; several: on every user's lower hops, made once in files, or kept from the fit)."""
        kept = self._kept_shared(inputs)
        several = len(rows) > per_block
        make = several and kept is None
        with (store.scratch_dir(inputs) if make else contextlib.nullcontext()) as path, \
                progress.bar(total=len(rows), desc="sign scores", unit="user", leave=False, disable=not several) as shown:
            shared = self._shared_blocks(inputs, path, per_block) if make else kept
            for lo in range(0, len(rows), per_block):
                chunk = rows[lo:lo + per_block]
                held = store.HeldBlocks(*self._blocks(inputs, self._raw_blocks_rows(inputs, chunk, shared)))
                yield self._run(self.net_, held, np.arange(len(chunk)), part)
                if shared is not None:
                    store.release_layers(shared.layers)
                shown.update(len(chunk))

    def _forward_rows(self, inputs: ModelInput, rows: np.ndarray, part: int) -> torch.Tensor:
        """``part`` of the output of ``rows``, their blocks computed a row block at a time."""
        outs = list(self._forward_blocks(inputs, rows, store.block_rows(inputs), part))
        if not outs:
            return self._run(self.net_, None, rows, part)
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def embed_blocks(self, inputs: ModelInput, block_rows: int):
        self._check_fitted()
        n = inputs.graph.num_users
        if n <= block_rows:
            yield self._embed(inputs)
            return
        for emb in self._forward_blocks(inputs, np.arange(n), block_rows, self.EMBEDDINGS):
            yield emb.numpy().astype(np.float64)

    def _proba_rows(self, inputs: ModelInput, rows: np.ndarray) -> np.ndarray:
        net = torch.softmax(self._forward_rows(inputs, rows, self.LOGITS).double(), dim=1).numpy()
        return self._blended(net, lambda: self.lr_.proba(inputs, rows))

    def _embed_rows(self, inputs: ModelInput, rows: np.ndarray) -> np.ndarray:
        return self._forward_rows(inputs, rows, self.EMBEDDINGS).numpy().astype(np.float64)

    # ------------------------------------------------------------------------------------- save / load
    def _state(self):
        arrays = {f"net.{k}": v.contiguous() for k, v in self.net_.state_dict().items()}
        arrays["f_mean"] = torch.from_numpy(np.ascontiguousarray(self.f_mean_))
        arrays["f_std"] = torch.from_numpy(np.ascontiguousarray(self.f_std_))
        arrays["idf"] = torch.from_numpy(np.ascontiguousarray(self.idf_))
        for b, (mean, std) in enumerate(self.block_stats_):
            arrays[f"block.{b}.mean"] = torch.from_numpy(np.ascontiguousarray(mean))
            arrays[f"block.{b}.std"] = torch.from_numpy(np.ascontiguousarray(std))
        config = {"n_items": self.n_items_, "social": self.social_, "copurchase": self.copurchase_,
                  "blocks": self.block_names_, "dense_dims": self.dense_dims_, "sparse": self.sparse_,
                  "choice": self.choice_, "best_epoch": self.best_epoch_, "history": self.history_,
                  "route": self.route_,
                  "world_size": self.world_size_}
        self._blend_state(config, arrays)
        return config, arrays

    def _from_state(self, config, arrays) -> None:
        self.n_items_ = config["n_items"]
        self.social_ = config["social"]
        self.copurchase_ = config["copurchase"]
        self.block_names_ = config["blocks"]
        self.dense_dims_ = config["dense_dims"]
        self.sparse_ = config["sparse"]
        self.choice_ = config["choice"]
        self.route_ = config.get("route", "grid")
        self.best_epoch_ = config["best_epoch"]
        self.history_ = config["history"]
        self.world_size_ = config.get("world_size", 1)  # a config without world_size: one process
        self.f_mean_, self.f_std_ = arrays["f_mean"].numpy(), arrays["f_std"].numpy()
        self.idf_ = arrays["idf"].numpy()
        self.block_stats_ = [(arrays[f"block.{b}.mean"].numpy(), arrays[f"block.{b}.std"].numpy())
                             for b in range(len(self.block_names_) - 1)]
        c = self.choice_
        self.net_ = self._new_net(c["hidden"], c["dropout"], self.dense_dims_, self.sparse_)
        self.net_.load_state_dict({k[len("net."):]: v for k, v in arrays.items() if k.startswith("net.")})
        self.net_.eval()
        self._blend_from_state(config, arrays)  # none on the large route
