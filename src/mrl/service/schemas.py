"""Request and response models of the HTTP API (pydantic): the OpenAPI schema is built from them.

Vectors are strict: JSON numbers only (no strings, nulls or booleans), finite (Python's JSON
reader accepts NaN and Infinity, pydantic refuses them here); ids are strict ints in
0..2^63-1. Unknown fields are refused so a misspelt option is an error, not ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mrl.retrieval.plans import Funnel, Plan, Rerank, SingleShot
from mrl.service.spec import MAX_DIM, NAME_PATTERN

MAX_ID = (1 << 63) - 1

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Vector = Annotated[list[Number], Field(min_length=1)]
ItemId = Annotated[int, Field(strict=True, ge=0, le=MAX_ID)]
Size = Annotated[int, Field(strict=True, ge=1, le=MAX_DIM)]
Payload = dict[str, Any] | None
Text = Annotated[str, Field(min_length=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- errors and probes
class ErrorDetail(BaseModel):
    type: str = Field(description="the error class, e.g. InputError, NotFoundError")
    message: str = Field(description="what is wrong and how to fix it, on one line")
    request_id: str = Field(description="quote it when reporting a 500")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    backend: str
    collections: int


# ---------------------------------------------------------------- embeddings
class EmbeddingRequest(Strict):
    """OpenAI's embeddings request: `dimensions` truncates, then re-normalises."""

    input: Text | Annotated[list[Text], Field(min_length=1)]
    model: str | None = Field(None, description="ignored beyond the name: the server has one")
    dimensions: Size | None = Field(None, description="prefix size, at most the model's width")
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str = Field(description="floats, or base64 of float32 bytes")
    index: int


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


# ---------------------------------------------------------------- collections
class CollectionCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="1-64 of [A-Za-z0-9_-]")
    dim: Size = Field(description="D, the full vector width")
    nesting: Annotated[list[Size], Field(min_length=1)] | None = Field(
        None, description="trained prefix sizes, increasing, ending at dim; default halving"
    )
    shortlist_dim: Size | None = Field(
        None, description="D_s, the prefix the ANN indexes (one of the nesting); default 16"
    )
    metric: Literal["cosine"] = "cosine"
    backend: Literal["memory", "postgres"] | None = Field(None, description="default: the server's")
    dtype: Literal["float32", "float16"] = "float32"
    default_plan: str = Field("funnel", description="plan spelling used when a search names none")


class CollectionInfo(BaseModel):
    name: str
    dim: int
    nesting: list[int]
    shortlist_dim: int
    metric: str
    backend: str
    dtype: str
    default_plan: str
    count: int
    memory_bytes: int


class CollectionList(BaseModel):
    collections: list[CollectionInfo]


class Deleted(BaseModel):
    deleted: int


# ---------------------------------------------------------------- items
class ItemsAdd(Strict):
    """A batch of items: ids with either vectors or texts (embedded by the server's model)."""

    ids: Annotated[list[ItemId], Field(min_length=1)]
    vectors: Annotated[list[Vector], Field(min_length=1)] | None = None
    texts: Annotated[list[Text], Field(min_length=1)] | None = None
    payloads: list[Payload] | None = Field(None, description="one JSON object (or null) per id")


class ItemsAdded(BaseModel):
    added: int


class ItemsDelete(Strict):
    ids: Annotated[list[ItemId], Field(min_length=1)]


class Item(BaseModel):
    id: int
    vector: list[float]
    payload: Payload = None


# ---------------------------------------------------------------- search
class SinglePlan(Strict):
    kind: Literal["single"]
    dim: Size
    exact: bool = True

    def to_plan(self) -> Plan:
        return SingleShot(self.dim, self.exact)


class RerankPlan(Strict):
    kind: Literal["rerank"]
    shortlist_dim: Size
    rerank_dim: Size
    shortlist: Annotated[int, Field(strict=True, ge=1)] = 200
    exact: bool = False

    def to_plan(self) -> Plan:
        return Rerank(self.shortlist_dim, self.rerank_dim, self.shortlist, self.exact)


class FunnelPlan(Strict):
    kind: Literal["funnel"]
    shortlist_dim: Size
    steps: Annotated[
        list[
            Annotated[
                list[Annotated[int, Field(strict=True, ge=1)]], Field(min_length=2, max_length=2)
            ]
        ],
        Field(min_length=1),
    ] = Field(description="[dim, candidates] pairs, dims increasing, candidates not")
    exact: bool = False

    def to_plan(self) -> Plan:
        return Funnel(self.shortlist_dim, tuple((d, c) for d, c in self.steps), self.exact)


PlanJson = Annotated[SinglePlan | RerankPlan | FunnelPlan, Field(discriminator="kind")]


class SearchRequest(Strict):
    """One query (`vector` or `text`) or a batch (`vectors` or `texts`): exactly one of them."""

    vector: Vector | None = None
    vectors: Annotated[list[Vector], Field(min_length=1)] | None = None
    text: Text | None = None
    texts: Annotated[list[Text], Field(min_length=1)] | None = None
    k: Annotated[int, Field(strict=True, ge=1)] = 10
    plan: str | PlanJson | None = Field(
        None, description="'funnel', 'rerank:16:2048:200', 'single:64[:ann]', ... or JSON"
    )
    target_recall: Annotated[float, Field(strict=True, gt=0, le=1)] | None = Field(
        None, description="cheapest tuned plan reaching this recall@k (default plan if untuned)"
    )
    include_payloads: bool = True


class QueryHits(BaseModel):
    ids: list[int]
    scores: list[float]
    payloads: list[Payload] | None = None


class SearchResponse(BaseModel):
    results: list[QueryHits]
    plan: str = Field(description="the plan that ran, in the CLI spelling")
    plan_source: Literal["request", "target_recall", "default"]
    stats: dict[str, float]


# ---------------------------------------------------------------- tuning
class TuneRequest(Strict):
    """Sample queries (like the ones to come) on which every candidate plan is measured."""

    vectors: Annotated[list[Vector], Field(min_length=1)]
    k: Annotated[int, Field(strict=True, ge=1)] = 10


class TunedPlan(BaseModel):
    plan: str
    latency_ms: float = Field(description="per query, one query per call")
    recall: float = Field(description="recall@k against exact full-dim search")
    recall_bound: float = Field(description="its one-sided 95% lower bound")


class TuneResponse(BaseModel):
    k: int
    queries: int
    rows: list[TunedPlan]
