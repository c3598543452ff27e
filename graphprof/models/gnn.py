"""``sage``: a heterogeneous GraphSAGE over the whole user-item-category-friend graph (full batch, or
neighbour-sampled mini-batches on large graphs).

Every node type gets its own input projection; each layer is a ``HeteroConv`` with one ``SAGEConv`` (mean
aggregation, root weight) per edge type, summed per destination type. The user's representation after every
layer is concatenated (jumping knowledge) before the classifier head, so the user's own features stay apart
from the neighbourhood's: on graphs where friends differ (low homophily) the head can lean on layer 0.
Trained with class-balanced cross-entropy, early-stopped on validation macro-F1.

Two routes (``mode``; the one taken is ``route_`` and ``config["route"]``):

* ``full``: one full-graph forward per step (the default on small graphs).
* ``minibatch``: neighbour-sampled mini-batches of training users (``batch_size``, ``fanout`` per layer;
  :class:`graphprof.models.sampler.CSRNeighborSampler` under PyG's ``NodeLoader``, each layer trimmed to the hops the
  later layers need). Validation and prediction are *exact* and never run a full-graph forward: a layer-wise
  pass over chunks of destination nodes with all their incoming edges (CSR slices), holding one
  ``[num_nodes, hidden]`` table per layer plus one chunk's messages -- the same numbers as the full forward (up
  to float summation order), independent of the sampler's seed and of the batch size.
  ``auto`` takes it when a ``batch_size`` is given or when a whole-graph step is not cheap: more than
  :data:`FULL_BATCH_MAX_WORK` nodes and edges (all types). A full-batch epoch is one optimiser step over the
  whole graph and the route needs 100-200 of them, so its cost grows with the graph, not with the labelled
  users: on a shop with many more items than labelled users, mini-batches take a fraction of its time (at a
  somewhat lower macro-F1), while on a graph the size of HetRec Last.fm's full batch is both quick and clearly
  the more accurate, which sets the threshold (benchmarks/RESULTS.md, training speed). Without a ``batch_size``, a batch holds
  :data:`DEFAULT_BATCH_SIZE` users, or fewer on a small training set so that an epoch makes at least
  :data:`MIN_STEPS` steps. A full-batch model predicting on a large graph (:data:`MINIBATCH_MIN_EDGES` edges or
  :data:`MINIBATCH_MIN_USERS` users) uses the layer-wise inference too.

The network itself (:class:`~graphprof.models.gnn_net.HeteroSAGENet`) is in :mod:`graphprof.models.gnn_net`.

Shapes: ``x_dict[t]`` is ``[num_nodes[t], in_dims[t]]``; logits ``[num_users, n_classes]``; embeddings
``[num_users, hidden * (layers + 1)]``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData
from torch_geometric.loader import NodeLoader

from graphprof.errors import ConfigError
from graphprof.models.base import Model, ModelInput, macro_f1
from graphprof.models.blend import BlendWithBaseline
from graphprof.models.gnn_net import HeteroSAGENet
from graphprof.models.ops import adam
from graphprof.models.sampler import CSRGraph, CSRNeighborSampler
from graphprof.models.search import GridRun, successive_halving
from graphprof.runtime import progress

log = logging.getLogger(__name__)

MAX_ONE_HOT_CATEGORIES = 256
MODES = ("auto", "full", "minibatch")
#: ``mode="auto"`` trains full batch only up to this many nodes and edges (all types, both directions counted):
#: below it a full-batch epoch is quick and full batch is the more accurate route (HetRec Last.fm is under it);
#: far above it, its 100-200 one-step epochs take minutes
FULL_BATCH_MAX_WORK = 500_000
#: a full-batch model predicts by layer-wise inference from this many edges (all edge types, both directions) ...
MINIBATCH_MIN_EDGES = 2_000_000
#: ... or this many users: a full-graph forward then holds several ``[E, hidden]`` message tensors.
MINIBATCH_MIN_USERS = 200_000
#: users per mini-batch when the mini-batch route is taken without a ``batch_size`` ...
DEFAULT_BATCH_SIZE = 1024
#: ... or fewer, so that an epoch makes at least this many optimiser steps (and batches of at least MIN_BATCH)
MIN_STEPS = 8
MIN_BATCH = 32
#: neighbours sampled per node, edge type and layer (outermost hop last) in the mini-batch route ...
DEFAULT_FANOUT = (15, 10)
#: ... and where batches are smaller than DEFAULT_BATCH_SIZE (a small training set on a large graph): such a
#: batch (at most a few hundred users) samples no more than 1,024 users do at DEFAULT_FANOUT
SMALL_BATCH_FANOUT = (25, 15)
#: the fewest epochs without a better validation macro-F1 before stopping, whatever the steps per epoch
MIN_PATIENCE_EPOCHS = 5


def _is_large(inputs: ModelInput) -> bool:
    """At least :data:`MINIBATCH_MIN_EDGES` edges (all types) or :data:`MINIBATCH_MIN_USERS` users."""
    d = inputs.graph.data
    n_edges = sum(int(d[et].edge_index.shape[1]) for et in d.edge_types)
    return n_edges >= MINIBATCH_MIN_EDGES or inputs.graph.num_users >= MINIBATCH_MIN_USERS


def _work(inputs: ModelInput) -> int:
    """Nodes and edges of every type: what one full-graph step visits."""
    d = inputs.graph.data
    return sum(int(d[et].edge_index.shape[1]) for et in d.edge_types) + sum(int(d[nt].num_nodes) for nt in d.node_types)


def _hetero_data(x_dict: dict[str, torch.Tensor], edges: dict) -> HeteroData:
    """The graph the sampler and ``NodeLoader`` work on: standardized ``x`` per node type, ``edge_index`` per
    edge type (no edge attributes: the convolutions do not read them)."""
    data = HeteroData()
    for nt, x in x_dict.items():
        data[nt].x = x
    for et, ei in edges.items():
        data[et].edge_index = ei
    return data


def _standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return np.clip((x - mean) / std, -6.0, 6.0)


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    std = x.std(axis=0)
    return x.mean(axis=0), np.where(std > 1e-12, std, 1.0)


def _as_grid(value, name: str) -> list[int]:
    """``hidden`` / ``layers`` as the list of values searched: one int, or a non-empty sequence of them (>= 1)."""
    values = [value] if isinstance(value, (int, np.integer)) else list(value)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values):
        raise ConfigError(f"{name} must be a positive integer or a non-empty list of them. Got {value!r} instead")
    return [int(v) for v in values]


@dataclass
class _FitInputs:
    """What every grid point of one fit trains on: standardized features, edges, the CSR graph (mini-batch
    route), labels (tensor and array), the split and the class weights."""

    x_dict: dict[str, torch.Tensor]
    edges: dict
    graph: CSRGraph | None
    yt: torch.Tensor
    y: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    weight: torch.Tensor


class HeteroSAGE(BlendWithBaseline, Model):
    """Heterogeneous GraphSAGE classifier.

    Args:
        hidden: width of every layer. layers: message-passing layers. Either may be a list: the grid of their
            combinations is searched on validation macro-F1 by successive halving (rounds of half the patience,
            each point trained from its own random state, so the winner is the model its point gives alone;
            the search is ``config["choice"]``). One point by default: a searched grid did not raise the
            test metrics on the benchmark data sets and costs more time (docs/models.md). dropout: dropout rate.
        lr, weight_decay: Adam settings. epochs: maximum epochs (an epoch is one pass over the training users
        in either route). patience: optimiser steps without a better validation macro-F1 before stopping,
        counted at the end of each epoch and never fewer than :data:`MIN_PATIENCE_EPOCHS` epochs: a full-batch
        epoch is one step, a mini-batch epoch many, and each of those steps moves the model as far as a
        full-batch one, so the mini-batch route waits fewer epochs.
        batch_size: training users per mini-batch (and the mini-batch route under ``mode="auto"``); ``None`` /
            0: the route the graph's size picks, with :meth:`_batch_size`'s batches if it is mini-batch.
        fanout: incoming edges sampled per node, edge type and layer in the mini-batch route (one entry per
            layer of the deepest net searched, outermost hop last; -1: all; shallower nets use its first
            entries); ``None``: :meth:`_fanout`'s.
        mode: ``"full"``, ``"minibatch"``, or ``"auto"``: mini-batches when ``batch_size`` is given or a
            whole-graph step visits more than :data:`FULL_BATCH_MAX_WORK` nodes and edges, else full batch.
        residual, norm: identity skips and a ``LayerNorm`` per layer and node type
            (:class:`~graphprof.models.gnn_net.HeteroSAGENet`; Luo et al. 2024). Off by default: at this
            depth and width, with the jumping-knowledge head, they lowered the bundled sample's age_band and
            HetRec's communities and left Deezer as it was (docs/models.md).
        blend: average the net's probabilities with those of an ``lr`` fitted on the same users, the net's
            weight chosen on validation (:mod:`graphprof.models.blend`).
    """

    name = "sage"
    conv = "sage"

    def __init__(self, seed: int = 0, hidden: int = 64, layers: int = 2, dropout: float = 0.3, lr: float = 0.01,
                 weight_decay: float = 5e-4, epochs: int = 200, patience: int = 30, batch_size: int | None = None,
                 fanout: tuple[int, ...] | list[int] | None = None, mode: str = "auto", residual: bool = False,
                 norm: bool = False, blend: bool = True):
        super().__init__(seed=seed, hidden=hidden, layers=layers, dropout=dropout, lr=lr,
                         weight_decay=weight_decay, epochs=epochs, patience=patience, batch_size=batch_size,
                         fanout=None if fanout is None else [int(k) for k in fanout], mode=mode,
                         residual=residual, norm=norm, blend=blend)

    def _route(self, inputs: ModelInput) -> str:
        """``"full"`` or ``"minibatch"``, from ``mode``, ``batch_size`` and the graph's size."""
        p = self.params
        if p["mode"] not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}. Got {p['mode']!r} instead")
        if p["mode"] != "auto":
            return p["mode"]
        if p["batch_size"]:
            return "minibatch"
        return "minibatch" if _work(inputs) > FULL_BATCH_MAX_WORK else "full"

    def _batch_size(self, n_train: int) -> int:
        """Users per mini-batch: ``batch_size``, else :data:`DEFAULT_BATCH_SIZE` or fewer so that an epoch makes
        :data:`MIN_STEPS` steps."""
        given = self.params["batch_size"]
        return int(given) if given else int(min(DEFAULT_BATCH_SIZE, max(MIN_BATCH, -(-n_train // MIN_STEPS))))

    def _fanout(self, n_train: int, layers: int) -> list[int]:
        """Neighbours sampled per layer for a ``layers``-deep net: the first ``layers`` entries of ``fanout``,
        else of :data:`DEFAULT_FANOUT`, or :data:`SMALL_BATCH_FANOUT` where the batches are smaller than
        :data:`DEFAULT_BATCH_SIZE` (the last entry repeated for deeper nets)."""
        given = self.params["fanout"]
        if given is not None:
            return list(given)[:layers]
        small = self._batch_size(n_train) < DEFAULT_BATCH_SIZE
        fanout = list(SMALL_BATCH_FANOUT if small else DEFAULT_FANOUT)
        return (fanout + fanout[-1:] * layers)[:layers]

    def _layerwise_inference(self, inputs: ModelInput) -> bool:
        """Predict by exact layer-wise inference (never a full-graph forward) after mini-batch training, or
        when the graph to predict on is large; else the full forward, the one the full-batch route trained with."""
        return getattr(self, "route_", "full") == "minibatch" or _is_large(inputs)

    def _check_minibatch_params(self, n_train: int, depth: int) -> None:
        """``fanout`` (if given) has one entry per layer of the deepest net searched (shallower nets use its first
        entries), each >= 0 or -1; ``batch_size`` (if given) is positive."""
        p = self.params
        given = p["fanout"]
        if given is not None and (len(given) != depth or any(k < -1 for k in given)):
            raise ConfigError(f"fanout must give one neighbour count (>= 0, or -1 for all) per layer "
                              f"({depth} layers). Got {given} instead")
        if p["batch_size"] is not None and p["batch_size"] < 0:
            raise ConfigError(f"batch_size must be a positive number of users. Got {p['batch_size']} instead")

    # ------------------------------------------------------------------------------------------ inputs
    def _raw_inputs(self, inputs: ModelInput) -> dict[str, np.ndarray]:
        g = inputs.graph
        items = inputs.features.items
        item_cols = [c for c in items.columns if c not in ("category", "popularity")]
        raw = {"user": inputs.features.matrix, "item": items[item_cols].to_numpy(np.float64)}
        if "category" in g.data.node_types:
            n_cat = len(g.category_ids)
            counts = np.bincount(g.data["item", "in", "category"].edge_index[1].numpy(), minlength=n_cat)
            cols = [np.log1p(counts)[:, None]]
            if n_cat <= MAX_ONE_HOT_CATEGORIES:
                cols.append(np.eye(n_cat))
            raw["category"] = np.concatenate(cols, axis=1)
        return raw

    def _x_dict(self, inputs: ModelInput) -> dict[str, torch.Tensor]:
        raw = self._raw_inputs(inputs)
        return {nt: torch.from_numpy(_standardize(x, self.norm_[nt][0], self.norm_[nt][1]).astype(np.float32))
                for nt, x in raw.items()}

    @staticmethod
    def _edges(inputs: ModelInput) -> dict:
        d = inputs.graph.data
        return {et: d[et].edge_index for et in d.edge_types}

    # ---------------------------------------------------------------------------------------- training
    def _fit(self, inputs: ModelInput, y, train_idx, val_idx) -> None:
        p = self.params
        hiddens, depths = _as_grid(p["hidden"], "hidden"), _as_grid(p["layers"], "layers")
        self.route_ = self._route(inputs)
        self.fanout_ = None
        if self.route_ == "minibatch":
            self._check_minibatch_params(len(train_idx), max(depths))
        raw = self._raw_inputs(inputs)
        # user scaling from training users only; item/category scaling is label-free
        self.norm_ = {nt: _stats(x[train_idx] if nt == "user" else x) for nt, x in raw.items()}
        x_dict = self._x_dict(inputs)
        edges = self._edges(inputs)
        self.in_dims_ = {nt: int(x.shape[1]) for nt, x in x_dict.items()}
        self.edge_types_ = [list(et) for et in edges]
        self.arch_ = {"residual": bool(p.get("residual")), "norm": bool(p.get("norm"))}
        yt = torch.as_tensor(np.array(y, dtype=np.int64))  # a writable copy: y may be a read-only view
        counts = np.bincount(y[train_idx], minlength=len(self.classes_)).astype(np.float64)
        weight = torch.tensor(len(train_idx) / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
        graph = None
        if self.route_ == "minibatch":
            graph = CSRGraph(_hetero_data(x_dict, edges))  # shared by every grid point's sampler
        fit = _FitInputs(x_dict, edges, graph, yt, y, train_idx, val_idx, weight)
        runs = [self._start_run((hidden, depth), fit) for depth in depths for hidden in hiddens]
        patience = self._patience_epochs(len(train_idx))
        winner = successive_halving(runs, round_epochs=max(1, patience // 2))
        self.hidden_, self.layers_ = winner.point
        self.net_, self.best_epoch_, self.history_ = winner.net, winner.best_epoch, winner.history
        self.net_.load_state_dict(winner.best_state)
        self.net_.eval()
        if self.route_ == "minibatch":
            self.fanout_ = self._fanout(len(train_idx), self.layers_)
        self.choice_ = {"hidden": self.hidden_, "layers": self.layers_, "val_macro_f1": winner.best_f1,
                        "grid": [{"hidden": r.point[0], "layers": r.point[1], "val_macro_f1": r.best_f1,
                                  "best_epoch": r.best_epoch, "epochs": len(r.history)} for r in runs],
                        "search": {"method": "successive halving", "round_epochs": max(1, patience // 2)}}
        self.blend_, self.lr_ = None, None
        if p.get("blend"):
            # the best epoch's validation logits: the eval-mode forward of the weights kept, no second pass
            net_val = torch.softmax(winner.best_extra.double(), dim=1).numpy()
            self._fit_blend(inputs, y, train_idx, val_idx, net_val)
        log.debug("%s: %s route, %d x %d chosen, best epoch %d of %d", self.name, self.route_, self.layers_,
                  self.hidden_, self.best_epoch_, len(self.history_))

    def _new_net(self, hidden: int, layers: int) -> HeteroSAGENet:
        return HeteroSAGENet(self.in_dims_, [tuple(et) for et in self.edge_types_], hidden, len(self.classes_),
                             layers, self.params["dropout"], conv=self.conv, **self.arch_)

    def _start_run(self, point: tuple[int, int], fit: _FitInputs) -> GridRun:
        """One (hidden, layers) point ready to train: its net built under ``torch.manual_seed(seed)`` and the
        torch random state it continues from, so it trains as it would alone however the search interleaves."""
        torch.manual_seed(self.seed)
        run = GridRun(point=point, net=self._new_net(*point), rng=torch.get_rng_state())
        run.steps = self._train(run, fit)
        return run

    def _train(self, run: GridRun, fit: _FitInputs):
        """Train ``run``'s net epoch by epoch with early stopping on validation macro-F1, keeping its best
        macro-F1, epoch, weights, validation logits (``best_extra``) and history in ``run``; yields after each
        epoch."""
        p = self.params
        opt = adam(run.net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        if self.route_ == "minibatch":
            epochs = self._minibatch_epochs(run.net, fit, opt)
        else:
            epochs = self._full_epochs(run.net, fit, opt)
        bad, patience = 0, self._patience_epochs(len(fit.train_idx))
        y_val, yt_val = fit.y[fit.val_idx], fit.yt[fit.val_idx]
        with progress.bar(total=p["epochs"], desc=f"{self.name} {run.point[1]}x{run.point[0]}", unit="epoch",
                          leave=False) as shown:
            for epoch, (train_loss, val_logits) in enumerate(epochs):
                val_loss = float(F.cross_entropy(val_logits, yt_val, weight=fit.weight))
                val_f1 = macro_f1(y_val, val_logits.argmax(1).numpy())
                run.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                                    "val_macro_f1": val_f1})
                shown.set_postfix(val_f1=f"{val_f1:.3f}", refresh=False)
                shown.update()
                if val_f1 > run.best_f1:
                    run.best_f1, run.best_epoch, run.best_extra, bad = val_f1, epoch, val_logits, 0
                    run.best_state = {k: v.detach().clone() for k, v in run.net.state_dict().items()}
                else:
                    bad += 1
                    if bad >= patience:
                        return
                yield

    def _patience_epochs(self, n_train: int) -> int:
        """``patience`` (optimiser steps) in epochs of this route: at least :data:`MIN_PATIENCE_EPOCHS`."""
        p = self.params
        steps = 1 if self.route_ == "full" else -(-n_train // self._batch_size(n_train))
        return max(min(MIN_PATIENCE_EPOCHS, p["patience"]), -(-p["patience"] // max(steps, 1)))

    def _full_epochs(self, net: HeteroSAGENet, fit: _FitInputs, opt):
        """Full-batch epochs: one step on the whole graph, then the validation logits. Yields
        ``(train_loss, val_logits [len(val_idx), n_classes])``."""
        tr, va = torch.from_numpy(fit.train_idx), torch.from_numpy(fit.val_idx)
        for _ in range(self.params["epochs"]):
            net.train()
            opt.zero_grad()
            logits, _ = net(fit.x_dict, fit.edges)
            loss = F.cross_entropy(logits[tr], fit.yt[tr], weight=fit.weight)
            loss.backward()
            opt.step()
            net.eval()
            with torch.no_grad():
                logits, _ = net(fit.x_dict, fit.edges)
            yield float(loss.detach()), logits[va]

    def _minibatch_epochs(self, net: HeteroSAGENet, fit: _FitInputs, opt):
        """Mini-batch epochs: a shuffled pass over the training users in neighbour-sampled batches (the first
        ``layers`` entries of the fanout), then the exact layer-wise validation logits. Yields
        ``(mean train loss, val_logits)``."""
        p = self.params
        n_train = len(fit.train_idx)
        sampler = CSRNeighborSampler(fit.graph, self._fanout(n_train, len(net.convs)), seed=self.seed)
        loader = NodeLoader(_hetero_data(fit.x_dict, fit.edges), node_sampler=sampler,
                            input_nodes=("user", torch.from_numpy(fit.train_idx)),
                            batch_size=self._batch_size(n_train), shuffle=True,
                            generator=torch.Generator().manual_seed(self.seed))
        va = torch.from_numpy(fit.val_idx)
        for _ in range(p["epochs"]):
            net.train()
            total, seen = 0.0, 0
            for batch in loader:
                opt.zero_grad()
                n = int(batch["user"].batch_size)
                logits, _ = net.forward_sampled(
                    batch.x_dict, batch.edge_index_dict,
                    {nt: batch[nt].num_sampled_nodes for nt in batch.node_types},
                    {et: batch[et].num_sampled_edges for et in batch.edge_types}, n)
                loss = F.cross_entropy(logits, fit.yt[batch["user"].n_id[:n]], weight=fit.weight)
                loss.backward()
                opt.step()
                total, seen = total + float(loss.detach()) * n, seen + n
            net.eval()
            with torch.no_grad():  # left before yielding: grad mode is global, and other grid points train
                val_logits = net.head(net.layerwise_reps(fit.x_dict, fit.graph, types={"user"})["user"][va])
            yield total / max(seen, 1), val_logits

    def _forward(self, inputs: ModelInput) -> tuple[torch.Tensor, torch.Tensor]:
        self.net_.eval()
        with torch.no_grad():
            if self._layerwise_inference(inputs):
                emb = self._layerwise(inputs, {"user"})["user"]
                return self.net_.head(emb), emb
            return self.net_(self._x_dict(inputs), self._edges(inputs))

    def _layerwise(self, inputs: ModelInput, types: set[str]) -> dict[str, torch.Tensor]:
        """Exact representations of ``types`` by layer-wise inference (no full-graph forward)."""
        x_dict = self._x_dict(inputs)
        return self.net_.layerwise_reps(x_dict, CSRGraph(_hetero_data(x_dict, self._edges(inputs))), types=types)

    def _proba(self, inputs: ModelInput) -> np.ndarray:
        logits, _ = self._forward(inputs)
        return self._blended(torch.softmax(logits.double(), dim=1).numpy(), lambda: self.lr_.proba(inputs))

    def _embed(self, inputs: ModelInput) -> np.ndarray:
        return self._forward(inputs)[1].numpy().astype(np.float64)

    def embed_items(self, inputs: ModelInput) -> np.ndarray:
        """Item embeddings ``[num_items, hidden * (layers + 1)]``, in the same space as the user embeddings."""
        self._check_fitted()
        self.net_.eval()
        with torch.no_grad():
            if self._layerwise_inference(inputs):
                return self._layerwise(inputs, {"item"})["item"].numpy().astype(np.float64)
            reps = self.net_.node_reps(self._x_dict(inputs), self._edges(inputs), types={"item"})
            return reps["item"].numpy().astype(np.float64)

    # ------------------------------------------------------------------------------------- save / load
    def _state(self):
        arrays = {f"net.{k}": v.contiguous() for k, v in self.net_.state_dict().items()}
        for nt, (mean, std) in self.norm_.items():
            arrays[f"norm.{nt}.mean"] = torch.from_numpy(mean)
            arrays[f"norm.{nt}.std"] = torch.from_numpy(std)
        config = {"in_dims": self.in_dims_, "edge_types": self.edge_types_, "best_epoch": self.best_epoch_,
                  "history": self.history_, "route": self.route_, "fanout": getattr(self, "fanout_", None),
                  "hidden": self.hidden_, "layers": self.layers_, "choice": self.choice_, **self.arch_}
        self._blend_state(config, arrays)
        return config, arrays

    def _from_state(self, config, arrays) -> None:
        p = self.params
        self.in_dims_ = config["in_dims"]
        self.edge_types_ = config["edge_types"]
        self.best_epoch_ = config["best_epoch"]
        self.history_ = config["history"]
        self.route_ = config.get("route", "full")  # a config without a route: a full-batch model
        self.fanout_ = config.get("fanout")  # the mini-batch route's sampling (None: full batch)
        self.norm_ = {nt: (arrays[f"norm.{nt}.mean"].numpy(), arrays[f"norm.{nt}.std"].numpy())
                      for nt in self.in_dims_}
        # a config without them: a net without skips or norms
        self.arch_ = {"residual": bool(config.get("residual", False)), "norm": bool(config.get("norm", False))}
        # a config without them: one (hidden, layers) point, the parameters'
        self.hidden_ = int(config.get("hidden", _as_grid(p["hidden"], "hidden")[0]))
        self.layers_ = int(config.get("layers", _as_grid(p["layers"], "layers")[0]))
        self.choice_ = config.get("choice")
        self.net_ = self._new_net(self.hidden_, self.layers_)
        self.net_.load_state_dict({k[len("net."):]: v for k, v in arrays.items() if k.startswith("net.")})
        self.net_.eval()
        self._blend_from_state(config, arrays)


class HeteroGAT(HeteroSAGE):
    """``gat``: the same architecture with one ``GATConv`` per edge type (attention over each relation's
    neighbours, one head) instead of mean aggregation: a relation-aware attention model. The user's own
    representation is not attended away: every layer's output is concatenated with layer 0 (jumping knowledge)
    before the head. Same training, early stopping and saving as ``sage``."""

    name = "gat"
    conv = "gat"
