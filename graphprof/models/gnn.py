"""``sage``: a heterogeneous GraphSAGE over the whole user-item-category-friend graph (full batch).

Every node type gets its own input projection; each layer is a ``HeteroConv`` with one ``SAGEConv`` (mean
aggregation, root weight) per edge type, summed per destination type. The user's representation after every
layer is concatenated (jumping knowledge) before the classifier head, so the user's own features stay apart
from the neighbourhood's: on graphs where friends differ (low homophily) the head can lean on layer 0.
Trained with class-balanced cross-entropy, early-stopped on validation macro-F1.

Shapes: ``x_dict[t]`` is ``[num_nodes[t], in_dims[t]]``; logits ``[num_users, n_classes]``; embeddings
``[num_users, hidden * (layers + 1)]``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn
from torch_geometric.nn import GATConv, HeteroConv, SAGEConv

from graphprof.models.base import Model, ModelInput

MAX_ONE_HOT_CATEGORIES = 256


def _conv(kind: str, hidden: int):
    if kind == "sage":
        return SAGEConv(hidden, hidden, aggr="mean", root_weight=True)
    if kind == "gat":  # attention over each relation's neighbours; the own representation travels by the skip
        return GATConv((hidden, hidden), hidden, heads=1, add_self_loops=False)
    raise ValueError(f"conv must be 'sage' or 'gat'. Got {kind!r} instead")  # an invariant: set by the class


class HeteroSAGENet(nn.Module):
    def __init__(self, in_dims: dict[str, int], edge_types: list[tuple[str, str, str]], hidden: int,
                 out: int, layers: int, dropout: float, conv: str = "sage"):
        super().__init__()
        self.dropout = dropout
        self.lin_in = nn.ModuleDict({nt: nn.Linear(d, hidden) for nt, d in in_dims.items()})
        self.convs = nn.ModuleList([
            HeteroConv({et: _conv(conv, hidden) for et in edge_types}, aggr="sum")
            for _ in range(layers)
        ])
        self.head = nn.Linear(hidden * (layers + 1), out)

    def node_reps(self, x_dict: dict[str, torch.Tensor], edge_index_dict: dict) -> dict[str, torch.Tensor]:
        """Every node type's representations after each layer, concatenated: ``[num_nodes, hidden * (layers + 1)]``."""
        h = {nt: F.dropout(F.relu(self.lin_in[nt](x)), self.dropout, self.training) for nt, x in x_dict.items()}
        reps = {nt: [v] for nt, v in h.items()}
        for conv in self.convs:
            new = conv(h, edge_index_dict)
            h = {nt: F.dropout(F.relu(new[nt]), self.dropout, self.training) if nt in new else h[nt] for nt in h}
            for nt, v in h.items():
                reps[nt].append(v)
        return {nt: torch.cat(v, dim=1) for nt, v in reps.items()}

    def forward(self, x_dict: dict[str, torch.Tensor], edge_index_dict: dict) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.node_reps(x_dict, edge_index_dict)["user"]
        return self.head(emb), emb


def _standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return np.clip((x - mean) / std, -6.0, 6.0)


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    std = x.std(axis=0)
    return x.mean(axis=0), np.where(std > 1e-12, std, 1.0)


class HeteroSAGE(Model):
    """Heterogeneous GraphSAGE classifier.

    Args:
        hidden: width of every layer. layers: message-passing layers. dropout: dropout rate.
        lr, weight_decay: Adam settings. epochs: maximum epochs. patience: epochs without a better validation
        macro-F1 before stopping.
    """

    name = "sage"
    conv = "sage"

    def __init__(self, seed: int = 0, hidden: int = 64, layers: int = 2, dropout: float = 0.3, lr: float = 0.01,
                 weight_decay: float = 5e-4, epochs: int = 200, patience: int = 30):
        super().__init__(seed=seed, hidden=hidden, layers=layers, dropout=dropout, lr=lr,
                         weight_decay=weight_decay, epochs=epochs, patience=patience)

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
        torch.manual_seed(self.seed)
        raw = self._raw_inputs(inputs)
        # user scaling from training users only; item/category scaling is label-free
        self.norm_ = {nt: _stats(x[train_idx] if nt == "user" else x) for nt, x in raw.items()}
        x_dict = self._x_dict(inputs)
        edges = self._edges(inputs)
        self.in_dims_ = {nt: int(x.shape[1]) for nt, x in x_dict.items()}
        self.edge_types_ = [list(et) for et in edges]
        self.net_ = HeteroSAGENet(self.in_dims_, list(edges), p["hidden"], len(self.classes_), p["layers"],
                                  p["dropout"], conv=self.conv)
        opt = torch.optim.Adam(self.net_.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        yt = torch.from_numpy(y)
        tr, va = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
        counts = np.bincount(y[train_idx], minlength=len(self.classes_)).astype(np.float64)
        weight = torch.tensor(len(train_idx) / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
        best_f1, best_state, bad, history = -1.0, None, 0, []
        for epoch in range(p["epochs"]):
            self.net_.train()
            opt.zero_grad()
            logits, _ = self.net_(x_dict, edges)
            loss = F.cross_entropy(logits[tr], yt[tr], weight=weight)
            loss.backward()
            opt.step()
            self.net_.eval()
            with torch.no_grad():
                logits, _ = self.net_(x_dict, edges)
                val_loss = float(F.cross_entropy(logits[va], yt[va], weight=weight))
                val_f1 = float(f1_score(y[val_idx], logits[va].argmax(1).numpy(), average="macro"))
            history.append({"epoch": epoch, "train_loss": float(loss.detach()), "val_loss": val_loss, "val_macro_f1": val_f1})
            if val_f1 > best_f1:
                best_f1, bad = val_f1, 0
                best_state = {k: v.detach().clone() for k, v in self.net_.state_dict().items()}
                self.best_epoch_ = epoch
            else:
                bad += 1
                if bad >= p["patience"]:
                    break
        self.net_.load_state_dict(best_state)
        self.net_.eval()
        self.history_ = history

    def _forward(self, inputs: ModelInput) -> tuple[torch.Tensor, torch.Tensor]:
        self.net_.eval()
        with torch.no_grad():
            return self.net_(self._x_dict(inputs), self._edges(inputs))

    def _proba(self, inputs: ModelInput) -> np.ndarray:
        logits, _ = self._forward(inputs)
        return torch.softmax(logits.double(), dim=1).numpy()

    def _embed(self, inputs: ModelInput) -> np.ndarray:
        return self._forward(inputs)[1].numpy().astype(np.float64)

    def embed_items(self, inputs: ModelInput) -> np.ndarray:
        """Item embeddings ``[num_items, hidden * (layers + 1)]``, in the same space as the user embeddings."""
        self._check_fitted()
        self.net_.eval()
        with torch.no_grad():
            return self.net_.node_reps(self._x_dict(inputs), self._edges(inputs))["item"].numpy().astype(np.float64)

    # ------------------------------------------------------------------------------------- save / load
    def _state(self):
        arrays = {f"net.{k}": v.contiguous() for k, v in self.net_.state_dict().items()}
        for nt, (mean, std) in self.norm_.items():
            arrays[f"norm.{nt}.mean"] = torch.from_numpy(mean)
            arrays[f"norm.{nt}.std"] = torch.from_numpy(std)
        config = {"in_dims": self.in_dims_, "edge_types": self.edge_types_, "best_epoch": self.best_epoch_,
                  "history": self.history_}
        return config, arrays

    def _from_state(self, config, arrays) -> None:
        p = self.params
        self.in_dims_ = config["in_dims"]
        self.edge_types_ = config["edge_types"]
        self.best_epoch_ = config["best_epoch"]
        self.history_ = config["history"]
        self.norm_ = {nt: (arrays[f"norm.{nt}.mean"].numpy(), arrays[f"norm.{nt}.std"].numpy())
                      for nt in self.in_dims_}
        self.net_ = HeteroSAGENet(self.in_dims_, [tuple(et) for et in self.edge_types_], p["hidden"],
                                  len(self.classes_), p["layers"], p["dropout"], conv=self.conv)
        self.net_.load_state_dict({k[len("net."):]: v for k, v in arrays.items() if k.startswith("net.")})
        self.net_.eval()


class HeteroGAT(HeteroSAGE):
    """``gat``: the same architecture with one ``GATConv`` per edge type (attention over each relation's
    neighbours, one head) instead of mean aggregation: a relation-aware attention model. The user's own
    representation is not attended away: every layer's output is concatenated with layer 0 (jumping knowledge)
    before the head. Same training, early stopping and saving as ``sage``."""

    name = "gat"
    conv = "gat"
