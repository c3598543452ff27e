"""``sign``'s precomputed aggregates (what each block is: :mod:`graphprof.models.sign`): the standardisation of
the dense parts, the users' bags of items, and the blocks of every user (:meth:`SIGNBlocks._raw_blocks`) or of
given rows only, on their neighbourhood (:meth:`SIGNBlocks._raw_blocks_rows`, what ``graphprof predict`` reads),
with the same arithmetic row by row."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from graphprof.models.bag import row_scale, tfidf_bag
from graphprof.models.base import ModelInput, feature_rows
from graphprof.models.sign.sparse_hops import sparse_hop

CLIP = 6.0
#: Bytes of friends' rows (dense part and bag) a row block's last social hop reads into memory at once. Every
#: read pass over the mapped hop files costs about a read of the whole files (the friends are spread over them),
#: so a row block takes as few passes as this allows.
HOP_BYTES = 2 ** 31
#: Bytes of standardised features held at once where a product reads every user's (a few columns at a time).
STD_BYTES = 2 ** 29


class Shared(NamedTuple):
    """The whole-graph inputs of :meth:`SIGNBlocks._raw_blocks_rows` (:meth:`SIGNBlocks._shared`)."""

    adj_rows: Callable | None      # rows of the friend adjacency (None: no social hops)
    counts: sp.csr_matrix          # user x item purchase counts
    item_f: np.ndarray | None      # P_nᵀ F [num_items, num_features]
    inv: np.ndarray | None         # 1 / the column sums of log(1 + counts)
    #: every user's hops ``0 .. hops - 1`` (``(dense, bag)``; hop 0's dense part is ``F`` itself, None here),
    #: where row blocks cover most users (:func:`graphprof.models.sign.store.write_layers`)
    layers: list | None = None


def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    std = x.std(axis=0)
    return x.mean(axis=0), np.where(std > 1e-12, std, 1.0)


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    out = x - mean  # in place from here: one array allocated, each one as large as the features
    out /= std
    return np.clip(out, -CLIP, CLIP, out=out)


def standardized_product(m: sp.csr_matrix, x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``m @ standardize(x, mean, std)`` with at most :data:`STD_BYTES` of standardised ``x`` held at once: a few
    columns at a time. Each column of a sparse-dense product is its own sum, so the numbers are the same.

    Shapes: ``m`` ``[r, n]``, ``x`` ``[n, d]`` -> ``[r, d]``."""
    step = max(1, STD_BYTES // (8 * max(x.shape[0], 1)))
    if step >= x.shape[1]:
        return m @ standardize(x, mean, std)
    out = np.empty((m.shape[0], x.shape[1]))
    for lo in range(0, x.shape[1], step):
        out[:, lo:lo + step] = m @ standardize(x[:, lo:lo + step], mean[lo:lo + step], std[lo:lo + step])
    return out


def _cached(inputs: ModelInput, key: str, compute):
    """A label-free sparse block (the bag of items and its social hops: the graph alone makes them) from the
    work directory's cache where ``train`` gives one (:mod:`graphprof.workdir.cache`), else computed."""
    cache = getattr(inputs, "cache", None)
    return compute() if cache is None else cache.csr(key, compute)


class SIGNBlocks:
    """The block computations of :class:`graphprof.models.sign.SIGN`, which fits what they read: ``params``
    (``hops``, ``top_k``), ``social_``, ``copurchase_``, ``f_mean_`` / ``f_std_``, ``idf_`` and ``n_items_``."""

    def _counts(self, inputs: ModelInput) -> sp.csr_matrix:
        """The user x item purchase counts, on the items the model was fitted on."""
        counts = inputs.graph.purchase_matrix("count").tocsr()
        if counts.shape[1] != self.n_items_:
            # an invariant: graphprof predict keeps the saved graph's items
            raise ValueError(f"sign: the graph must have the {self.n_items_} items the model was fitted on. "
                             f"Got {counts.shape[1]} instead")
        return counts

    def _bag(self, inputs: ModelInput) -> sp.csr_matrix:
        """``T``: ``log(1 + count) * idf``, rows L2-normalised ``[num_users, num_items]`` (:mod:`graphprof.models.bag`)."""
        return tfidf_bag(self._counts(inputs), self.idf_)

    def _raw_blocks(self, inputs: ModelInput) -> tuple[list[str], list[np.ndarray], list]:
        """Block names, dense parts (unstandardised aggregates of the standardised ``F``) and sparse parts."""
        p = self.params
        g = inputs.graph
        f = standardize(inputs.features.matrix, self.f_mean_, self.f_std_)
        t = _cached(inputs, "sign-bag", lambda: self._bag(inputs))
        names, dense, bags = ["own"], [f], [t]
        if self.social_:
            adj = row_scale(g.social_adjacency(), "l1")
            hf, ht = f, t
            for k in range(1, p["hops"] + 1):
                hf = adj @ hf  # reads the training users' statistics (through f): not cached
                ht = _cached(inputs, f"sign-social_{k}-top{p['top_k']}",
                             lambda ht=ht: row_scale(sparse_hop(adj, ht, p["top_k"]), "l2"))
                names.append(f"social_{k}")
                dense.append(hf)
                bags.append(ht)
        if self.copurchase_:
            w = g.purchase_matrix("count").tocsr().log1p()
            pn, ptn = row_scale(w, "l1"), row_scale(w.T.tocsr(), "l1")
            # the u -> i -> u paths (a user reaching itself) out: the neighbours' profile only
            self_w = np.asarray(pn.multiply(ptn.T).sum(axis=1)).ravel()
            rest = 1.0 - self_w
            agg = pn @ (ptn @ f) - self_w[:, None] * f
            agg = np.divide(agg, rest[:, None], out=np.zeros_like(agg), where=rest[:, None] > 1e-9)
            names.append("copurchase")
            dense.append(agg)
            bags.append(None)
        return names, dense, bags

    def _shared(self, inputs: ModelInput) -> Shared:
        """What every row block of :meth:`_raw_blocks_rows` reads of the whole graph, made once: the adjacency
        rows' reader, the purchase counts and, for the co-purchase block, the item-level ``P_nᵀ F`` with the
        column sums of the log counts. Every user's standardised ``F`` is never held: the products that read it
        take a few columns at a time (:func:`standardized_product`). Row blocks that cover most users add every
        user's lower hops (:func:`graphprof.models.sign.store.write_layers`)."""
        g = inputs.graph
        adj_rows = getattr(g, "adjacency_rows", None)  # from the rows' own ties where the graph can (graphprof.extend)
        if adj_rows is None and self.social_ and self.params["hops"]:
            adj_rows = g.social_adjacency().__getitem__
        counts = self._counts(inputs)
        item_f = inv = None
        if self.copurchase_:
            wt = counts.T.tocsr()
            np.log1p(wt.data, out=wt.data)  # in place: the same values as a log1p copy, one matrix fewer
            # P_nᵀ F: [num_items, num_features]
            item_f = standardized_product(row_scale(wt, "l1"), inputs.features.matrix, self.f_mean_, self.f_std_)
            s = np.asarray(wt.sum(axis=1)).ravel()  # log counts: never negative
            del wt
            inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
        return Shared(adj_rows, counts, item_f, inv)

    def _bag_rows(self, inputs: ModelInput, rows, counts: sp.csr_matrix | None = None) -> sp.csr_matrix:
        """The rows ``rows`` of :meth:`_bag` (the same arithmetic, row by row)."""
        return tfidf_bag((self._counts(inputs) if counts is None else counts)[rows], self.idf_)

    def _hop_rows(self, inputs: ModelInput, rows: np.ndarray, dense, bag: sp.csr_matrix,
                  adj_rows: Callable) -> tuple[np.ndarray, sp.csr_matrix]:
        """Hop ``k`` of the rows ``rows`` from hop ``k - 1`` of every user (``dense``: None for hop 0's ``F``; else,
        as ``bag``, mapped from :func:`~graphprof.models.sign.store.write_layers`' files): ``A[rows] @ X``, the bag
        cut to its top-k per row, as :meth:`_raw_blocks` does for every row at once. Computed on the rows' friends'
        rows of ``X``, read from the files a span at a time (their pages handed back) for as many rows together as
        :data:`HOP_BYTES` of friends' rows allow, so neither the files' pages nor the friends' rows pile up."""
        from graphprof.models.sign.store import gather_csr_rows, gather_rows

        adj = row_scale(adj_rows(rows), "l1")
        width = len(self.f_mean_) * 8 if dense is None else dense.shape[1] * dense.itemsize
        per_friend = width + bag.nnz / max(bag.shape[0], 1) * (bag.indices.itemsize + bag.data.itemsize)
        cost = np.cumsum(np.diff(adj.indptr)) * per_friend  # friends' bytes up to each row, an upper bound
        hfs, hts = [], []
        lo = 0
        while lo < len(rows):
            before = cost[lo - 1] if lo else 0.0
            hi = min(max(int(np.searchsorted(cost, before + HOP_BYTES, side="right")), lo + 1), len(rows))
            m = adj[lo:hi]
            friends = np.unique(m.indices)
            m = sp.csr_matrix((m.data, np.searchsorted(friends, m.indices), m.indptr), shape=(m.shape[0], len(friends)))
            if dense is None:
                f = standardize(feature_rows(inputs.features, friends), self.f_mean_, self.f_std_)
            else:
                f = gather_rows(dense, friends)
            hfs.append(m @ f)
            del f
            hts.append(row_scale(sparse_hop(m, gather_csr_rows(bag, friends), self.params["top_k"]), "l2"))
            lo = hi
        if not hfs:
            return np.zeros((0, len(self.f_mean_))), sp.csr_matrix((0, bag.shape[1]))
        return np.concatenate(hfs), sp.vstack(hts, format="csr")

    def _raw_blocks_rows(self, inputs: ModelInput, rows: np.ndarray,
                         shared: Shared | None = None) -> tuple[list[str], list[np.ndarray], list]:
        """:meth:`_raw_blocks`' rows ``rows`` only, computed on their neighbourhood with the same arithmetic row by
        row: hop ``k`` of the rows needs hop ``k - 1`` on their 1-hop ball ``B_1`` (rows and friends), ..., ``F``
        and ``T`` on their ``hops``-hop ball; each hop is ``A[B_j] @ X[B_j+1]`` (row slices of the row-normalised
        adjacency, columns renumbered within the next ball). The co-purchase block is ``P_n[rows] @ (P_nᵀ F)``
        minus the rows' own paths: ``P_nᵀ F`` is item-level, one product over every purchase (it reads every
        buyer's ``F``). ``shared``: :meth:`_shared`'s output, where several row blocks are computed; with its
        ``layers`` (every user's hops below the last), hop ``k < hops`` of the rows is read from them and the last
        hop is one product over them, with no ball (the same numbers)."""
        p = self.params
        hops = p["hops"] if self.social_ else 0
        adj_rows, counts, item_f, inv, layers = shared if shared is not None else self._shared(inputs)
        f_rows = None
        if layers is not None and hops:  # every user's lower hops are at hand: the last hop is one product
            f_rows = standardize(feature_rows(inputs.features, rows), self.f_mean_, self.f_std_)
            names, dense, bags = ["own"], [f_rows], [self._bag_rows(inputs, rows, counts)]
            for k in range(1, hops + 1):
                if k < hops:
                    hf, ht = np.asarray(layers[k][0][rows]), layers[k][1][rows]
                else:
                    hf, ht = self._hop_rows(inputs, rows, *layers[k - 1], adj_rows)
                names.append(f"social_{k}")
                dense.append(hf)
                bags.append(ht)
        else:  # on the rows' neighbourhood: balls[j] is their j-hop ball
            balls = [rows]
            for _ in range(hops):
                balls.append(np.union1d(balls[-1], adj_rows(balls[-1]).indices))
            far = balls[-1]
            hf = standardize(feature_rows(inputs.features, far), self.f_mean_, self.f_std_)
            ht = self._bag_rows(inputs, far, counts)
            at = np.searchsorted(far, rows) if hops else np.arange(len(rows))
            names, dense, bags = ["own"], [hf[at]], [ht[at]]
            for k in range(1, hops + 1):
                level, nxt = balls[hops - k], balls[hops - k + 1]
                m = row_scale(adj_rows(level), "l1")
                m = sp.csr_matrix((m.data, np.searchsorted(nxt, m.indices), m.indptr), shape=(len(level), len(nxt)))
                hf = m @ hf
                ht = row_scale(sparse_hop(m, ht, p["top_k"]), "l2")
                at = np.searchsorted(level, rows) if k < hops else np.arange(len(rows))
                names.append(f"social_{k}")
                dense.append(hf[at])
                bags.append(ht[at])
            del hf, ht
        if self.copurchase_:
            wr = counts[rows].log1p()
            pn = row_scale(wr, "l1")
            ptn_rows = sp.csr_matrix((wr.data * inv[wr.indices], wr.indices, wr.indptr), shape=wr.shape)  # (P_nᵀ)ᵀ[rows]
            self_w = np.asarray(pn.multiply(ptn_rows).sum(axis=1)).ravel()
            if f_rows is None:
                f_rows = standardize(feature_rows(inputs.features, rows), self.f_mean_, self.f_std_)
            agg = pn @ item_f - self_w[:, None] * f_rows
            rest = 1.0 - self_w
            agg = np.divide(agg, rest[:, None], out=np.zeros_like(agg), where=rest[:, None] > 1e-9)
            names.append("copurchase")
            dense.append(agg)
            bags.append(None)
        return names, dense, bags
