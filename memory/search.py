"""Nearest attempts under a metadata filter, without paying Chroma's pre-filter on every recall.

Chroma evaluates a `where` filter before the vector search, over the metadata of the whole
collection, so a filtered query costs time in proportion to the store: measured with
bench/memory_scale.py, the Tuner's recall (same model family, not this run) took 35 ms at 10k
attempts and 200 ms at 100k, while the unfiltered vector search stayed at ~12 ms.

`nearest` first searches without the filter for `PREFETCH` times the candidates it needs, and
filters those here. That answer is the same as the filtered query's whenever

- at least `want` of the fetched candidates pass: any passing attempt further away is further than
  all of them, so it could not be among the `want` nearest; or
- the search is exhausted: fewer than asked came back (the whole store was seen), or the last one is
  already under `min_similarity` (everything further is dropped anyway).

Otherwise (a filter that few near attempts pass) it runs Chroma's filtered query, as before.
Filters this module cannot evaluate (operators other than equality, $ne, $in, $nin, $and, $or)
always go to Chroma.
"""

from __future__ import annotations

from typing import Any

PREFETCH = 2  # unfiltered candidates fetched per wanted one


class Unsupported(Exception):
    """A filter (or a metadata entry) this module does not decide: Chroma's filtered query does."""


def nearest(collection: Any, embedding: Any, want: int, where: dict[str, Any] | None,
            min_similarity: float) -> tuple[list[str], list[Any], list[float]]:
    """(ids, metadatas, distances) of up to `want` nearest attempts that pass `where`, nearest first."""
    if where is not None:
        n = PREFETCH * want
        ids, metas, dists = _query(collection, embedding, n, None)
        try:
            keep = [i for i, meta in enumerate(metas) if matches(meta or {}, where)]
        except Unsupported:
            keep = None
        exhausted = len(ids) < n or (bool(dists) and 1.0 - dists[-1] < min_similarity)
        if keep is not None and (len(keep) >= want or exhausted):
            keep = keep[:want]
            return [ids[i] for i in keep], [metas[i] for i in keep], [dists[i] for i in keep]
    return _query(collection, embedding, want, where)


def _query(collection: Any, embedding: Any, n: int, where: dict[str, Any] | None) -> tuple[list, list, list]:
    found = collection.query(  # fewer than n_results stored is fine: Chroma returns what it has
        query_embeddings=embedding, n_results=n, where=where, include=["metadatas", "distances"],
    )
    return found["ids"][0], found["metadatas"][0], [float(d) for d in found["distances"][0]]


def matches(meta: dict[str, Any], where: dict[str, Any]) -> bool:
    """Does one metadata dict pass a Chroma `where`? Raises `Unsupported` where unsure."""
    if len(where) != 1:
        return all(matches(meta, {key: value}) for key, value in where.items())
    ((key, cond),) = where.items()
    if key == "$and":
        return all([matches(meta, c) for c in cond])  # a list: every clause is checked for support
    if key == "$or":
        return any([matches(meta, c) for c in cond])
    if key.startswith("$"):
        raise Unsupported(key)
    op, arg = next(iter(cond.items())) if isinstance(cond, dict) and len(cond) == 1 else ("$eq", cond)
    if isinstance(arg, dict) or op not in ("$eq", "$ne", "$in", "$nin"):
        raise Unsupported(op)
    if key not in meta:
        if op in ("$ne", "$nin"):
            raise Unsupported(f"{op} on a missing {key!r}")
        return False
    value = meta[key]
    if op == "$eq":
        return value == arg
    if op == "$ne":
        return value != arg
    return (value in arg) == (op == "$in")
