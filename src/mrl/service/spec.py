"""Checks shared by every backend: a collection's spec, and the plan a search runs under.

Kept apart from the backends so the in-process and the PostgreSQL backend validate a
`CollectionSpec` and resolve a search's plan the same way (same errors, same default plan).
"""

from __future__ import annotations

import re
from dataclasses import asdict, replace

import numpy as np

from mrl.checks import check_int, check_k
from mrl.errors import ConfigError, InputError
from mrl.nesting import Nesting
from mrl.retrieval.plans import Funnel, Plan, SingleShot, check_plan, parse_plan
from mrl.retrieval.storage import as_ids
from mrl.service.backend import METRICS, STORAGE_DTYPES, CollectionSpec

BACKENDS = ("memory", "postgres")
MAX_DIM = 16_000  # pgvector's vector(D) bound; far above any embedding we serve
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_NAME = re.compile(NAME_PATTERN)


def check_name(name: object) -> str:
    """A collection name: 1-64 characters of [A-Za-z0-9_-] (safe in a path and a SQL name)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"collection name {name!r} is not 1-64 characters of letters, digits, '_' or '-'; "
            "rename it"
        )
    return name


def check_spec(spec: CollectionSpec) -> CollectionSpec:
    """`spec` with every field checked and normalised (ints, a tuple nesting).

    Raises:
        ConfigError: naming the first field that is wrong and the values it may take.
    """
    check_name(spec.name)
    dim = check_int("dim", spec.dim, 1, MAX_DIM)
    nesting = Nesting(tuple(spec.nesting) if isinstance(spec.nesting, list) else spec.nesting)
    nesting.check_embed_dim(dim)
    shortlist_dim = check_int("shortlist_dim", spec.shortlist_dim, 1, dim)
    nesting.index(shortlist_dim)
    for field, value, choices in (
        ("metric", spec.metric, METRICS),
        ("backend", spec.backend, BACKENDS),
        ("dtype", spec.dtype, STORAGE_DTYPES),
    ):
        if value not in choices:
            raise ConfigError(f"unknown {field} {value!r}; choose one of {list(choices)}")
    spec = replace(spec, dim=dim, nesting=nesting.dims, shortlist_dim=shortlist_dim)
    check_plan(resolve_plan(spec, None, 1), dim, 1)
    return spec


def spec_to_dict(spec: CollectionSpec) -> dict:
    """The spec as JSON-ready fields (the nesting as a list)."""
    return {**asdict(spec), "nesting": list(spec.nesting)}


def spec_from_dict(d: dict) -> CollectionSpec:
    """Inverse of `spec_to_dict` (checked)."""
    return check_spec(CollectionSpec(**{**d, "nesting": tuple(d["nesting"])}))


def resolve_plan(spec: CollectionSpec, plan: Plan | None, k: int) -> Plan:
    """The plan a top-`k` search of a `spec` collection runs: `plan`, or the collection default.

    The default "funnel" is the paper's halving funnel from D_s, widened so it always keeps k
    candidates (shortlist >= 200 and >= k, last step k or 10), or the ANN alone when D_s = D.

    Raises:
        ConfigError: a plan that uses a dim above the collection's or keeps fewer than k.
    """
    if plan is None and spec.default_plan == "funnel":
        if spec.shortlist_dim == spec.dim:
            plan = SingleShot(spec.dim, exact=False)
        else:
            final = max(10, k)
            plan = Funnel.halving(spec.dim, spec.shortlist_dim, max(200, 2 * final), final)
    elif plan is None:
        plan = parse_plan(spec.default_plan, spec.dim, spec.shortlist_dim)
    check_plan(plan, spec.dim, k)
    return plan


def check_search_k(k: object, count: int, name: str) -> int:
    """k for a search of collection `name` holding `count` items (empty: a named error)."""
    if count == 0:
        raise InputError(f"collection {name!r} is empty: add items before searching it")
    return check_k(k, count, f"items of collection {name!r}")


def check_delete_ids(ids: object) -> np.ndarray:
    """Ids to delete as int64: at least one, each once (a repeat would be deleted twice)."""
    ids = as_ids(ids, "ids to delete")
    if len(ids) == 0:
        raise InputError("no ids to delete; give at least one id")
    if len(np.unique(ids)) != len(ids):
        raise InputError("the same id is given twice; give each id to delete once")
    return ids
