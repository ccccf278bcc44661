"""`create_app`: the FastAPI application, routes only, over a `Backend`.

Every route is a thin translation: JSON (validated by `mrl.service.schemas`) -> arrays ->
one `Backend` call -> JSON. Errors follow the library's contract, mapped to HTTP once here:
bad values and data 422, unknown names 404, clashes 409, limits 413/422, a backend or model
that is not available 503; the body is always `{"error": {type, message, request_id}}`, and
an unexpected exception answers 500 with only the request id (its trace goes to the log).

Routes are plain `def`s: FastAPI runs them in its thread pool, and the backends lock per
collection.
"""

import base64
import contextlib
import logging
import time
import uuid
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from mrl.errors import (
    ConfigError,
    ConflictError,
    InputError,
    LockedError,
    MrlError,
    NotFoundError,
    UnavailableError,
)
from mrl.retrieval.plans import Plan, parse_plan
from mrl.retrieval.storage import as_array
from mrl.service.auth import Keys
from mrl.service.backend import Backend, CollectionSpec
from mrl.service.embedder import Embedder
from mrl.service.limits import LimitError, Limits
from mrl.service.metrics import CONTENT_TYPE, Metrics
from mrl.service.schemas import (
    MAX_ID,
    CollectionCreate,
    CollectionInfo,
    CollectionList,
    Deleted,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorBody,
    Health,
    Item,
    ItemsAdd,
    ItemsAdded,
    ItemsDelete,
    QueryHits,
    Ready,
    SearchRequest,
    SearchResponse,
    TuneRequest,
    TuneResponse,
    Usage,
)
from mrl.service.spec import NAME_PATTERN, check_spec, resolve_plan, spec_to_dict
from mrl.service.tuning import plan_for_recall, tune

logger = logging.getLogger(__name__)

# every error status a route may answer, documented on every route (schema conformance)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 422, 500, 503)
}
_HTTP_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "LimitError",
}

CollectionName = Annotated[str, Path(pattern=NAME_PATTERN, description="collection name")]
ItemIdPath = Annotated[int, Path(ge=0, le=MAX_ID, description="item id")]


def status_of(error: MrlError) -> int:
    """The HTTP status of a library error (see the module docstring)."""
    if isinstance(error, LimitError):
        return error.status
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, ConflictError):
        return 409
    if isinstance(error, UnavailableError | LockedError):
        return 503
    return 422  # ConfigError, InputError, FormatError, PathError, ...


def error_response(status: int, kind: str, message: str, request_id: str, headers=None):
    """The one error body every failure answers: `{"error": {type, message, request_id}}`."""
    body = {"error": {"type": kind, "message": message, "request_id": request_id}}
    return JSONResponse(body, status_code=status, headers=headers)


def _request_id(request: Request) -> str:
    """The id `ServiceMiddleware` gave this request (also in its X-Request-ID header)."""
    return request.scope.get("state", {}).get("request_id", "-")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class ServiceMiddleware:
    """Request id, body-size limit, metrics, and the last line of defence (500 + request id).

    Pure ASGI (not `BaseHTTPMiddleware`): it wraps `receive` to count body bytes as they
    arrive, so a chunked body without a Content-Length is cut off at the limit too.
    """

    def __init__(self, app, metrics: Metrics, max_body_bytes: int):
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        start, status, started = time.perf_counter(), 500, False
        limit = self.max_body_bytes
        too_large = (
            f"the request body is over this server's limit max_body_bytes={limit}; send "
            "smaller batches (or start the server with --max-body-bytes)"
        )

        async def send_with_id(message):
            nonlocal status, started
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
                headers = list(message.get("headers", []))
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, too_large)
            return message

        try:
            declared = dict(scope.get("headers", [])).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                response = error_response(413, "LimitError", too_large, request_id)
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, limited_receive, send_with_id)
        except Exception:
            logger.exception(
                "request %s %s failed (request id %s)", scope["method"], scope["path"], request_id
            )
            if not started:
                message = (
                    f"internal error (request id {request_id}); the server logged the details: "
                    "report the request id"
                )
                response = error_response(500, "InternalError", message, request_id)
                await response(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            self.metrics.observe(label, scope["method"], status, time.perf_counter() - start)


def create_app(
    backend: Backend,
    keys: Keys | None = None,
    embedder: Embedder | None = None,
    limits: Limits | None = None,
    backend_name: str = "memory",
) -> FastAPI:
    """The service over `backend` (closed on shutdown).

    Args:
        backend: where collections live.
        keys: accepted API keys; None or empty: open access (the CLI allows that on loopback
            only).
        embedder: the text model; None: the default all-MiniLM-L6-v2, loaded on first use.
        limits: request limits; default `Limits()`.
        backend_name: "memory" or "postgres", reported by /ready and checked on create.
    """
    keys = keys or Keys()
    embedder = embedder or Embedder()
    limits = limits or Limits()
    metrics = Metrics(backend)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        backend.close()

    app = FastAPI(
        title="mrl",
        summary="Matryoshka embeddings and adaptive-retrieval search",
        version="1",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.add_middleware(ServiceMiddleware, metrics=metrics, max_body_bytes=limits.max_body_bytes)

    # ---------------------------------------------------------------- errors
    @app.exception_handler(MrlError)
    async def library_error(request: Request, e: MrlError):
        return error_response(status_of(e), type(e).__name__, _one_line(e), _request_id(request))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        problems = []
        for err in e.errors()[:3]:
            loc = ".".join(str(p) for p in err.get("loc", ()))
            problems.append(f"{loc}: {err.get('msg', 'invalid')}")
        more = f" (+{len(e.errors()) - 3} more)" if len(e.errors()) > 3 else ""
        message = f"invalid request: {'; '.join(problems)}{more}; see /docs for the schema"
        return error_response(422, "ValidationError", _one_line(message), _request_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        kind = _HTTP_TYPES.get(e.status_code, "HTTPError")
        message = _one_line(e.detail)
        if e.status_code in (404, 405):  # only the router raises these (404s of ours are MrlErrors)
            message = f"{message}: no route {request.method} {request.url.path}; see /docs"
        return error_response(e.status_code, kind, message, _request_id(request), e.headers)

    # ---------------------------------------------------------------- auth
    bearer = HTTPBearer(auto_error=False, description="an API key: Authorization: Bearer KEY")

    def role(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        if not keys:
            return "write"
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None:
            raise HTTPException(
                401, "no API key; send the header 'Authorization: Bearer KEY'", challenge
            )
        found = keys.role_of(credentials.credentials)
        if found is None:
            raise HTTPException(401, "the API key is not valid; check it or ask for one", challenge)
        return found

    def reader(r: Annotated[str, Depends(role)]) -> str:
        return r

    def writer(r: Annotated[str, Depends(role)]) -> str:
        if r != "write":
            raise HTTPException(
                403, "this API key is read-only; use a read-write key to change data"
            )
        return r

    Read, Write = Depends(reader), Depends(writer)

    # ---------------------------------------------------------------- helpers
    def info_model(name: str) -> CollectionInfo:
        info = backend.info(name)
        return CollectionInfo(
            **spec_to_dict(info["spec"]), count=info["count"], memory_bytes=info["memory_bytes"]
        )

    def rows_of(values, texts, spec: CollectionSpec, what: str) -> np.ndarray:
        """Vectors of the request (texts embedded at the collection's width), checked for dim."""
        if texts is not None:
            return embedder.encode(texts, spec.dim)[0]
        x = as_array(values, what)
        if x.ndim == 2 and x.shape[1] != spec.dim:
            raise InputError(
                f"{what} have {x.shape[1]} numbers per row but collection {spec.name!r} has "
                f"dim {spec.dim}; send rows of {spec.dim} numbers"
            )
        return x

    def plan_of(body: SearchRequest, spec: CollectionSpec, k: int) -> tuple[Plan, str]:
        if body.plan is not None and body.target_recall is not None:
            raise InputError("give a plan or a target_recall, not both")
        if isinstance(body.plan, str):
            return resolve_plan(spec, parse_plan(body.plan, spec.dim, spec.shortlist_dim), k), (
                "request"
            )
        if body.plan is not None:
            return resolve_plan(spec, body.plan.to_plan(), k), "request"
        table = getattr(backend, "tuning", lambda name: None)(spec.name)
        if body.target_recall is not None and table is not None:
            return resolve_plan(spec, plan_for_recall(table, spec, body.target_recall, k), k), (
                "target_recall"
            )
        return resolve_plan(spec, None, k), "default"

    # ---------------------------------------------------------------- probes
    @app.get("/health", response_model=Health, tags=["probes"])
    def health() -> Health:
        """The process is up (no backend call)."""
        return Health()

    @app.get("/ready", response_model=Ready, tags=["probes"])
    def ready() -> Ready:
        """The backend answers (503 while it cannot)."""
        return Ready(backend=backend_name, collections=len(backend.collections()))

    @app.get(
        "/metrics",
        tags=["probes"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text"}},
    )
    def metrics_route(_: str = Read) -> Response:
        """Prometheus metrics: requests and latency per route, items per collection."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    # ---------------------------------------------------------------- embeddings
    @app.post("/v1/embeddings", response_model=EmbeddingResponse, tags=["embeddings"])
    def embeddings(body: EmbeddingRequest, _: str = Read) -> EmbeddingResponse:
        """OpenAI-compatible embeddings; `dimensions` truncates then re-normalises."""
        texts = [body.input] if isinstance(body.input, str) else body.input
        limits.check("max_inputs", len(texts), "the number of inputs")
        z, tokens = embedder.encode(texts, body.dimensions)
        if body.encoding_format == "base64":
            rows = [base64.b64encode(r.astype("<f4").tobytes()).decode() for r in z]
        else:
            rows = z.tolist()
        return EmbeddingResponse(
            data=[Embedding(embedding=r, index=i) for i, r in enumerate(rows)],
            model=embedder.name,
            usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
        )

    # ---------------------------------------------------------------- collections
    @app.post(
        "/v1/collections", response_model=CollectionInfo, status_code=201, tags=["collections"]
    )
    def create_collection(body: CollectionCreate, _: str = Write) -> CollectionInfo:
        """Create an empty collection of `dim`-wide nested vectors."""
        from mrl.nesting import Nesting

        if body.backend is not None and body.backend != backend_name:
            raise InputError(
                f"this server runs the {backend_name!r} backend, not {body.backend!r}; omit "
                "backend or start a server with --backend " + body.backend
            )
        nesting = body.nesting or list(Nesting.halving(body.dim, min_dim=min(8, body.dim)).dims)
        shortlist_dim = body.shortlist_dim or next((m for m in nesting if m >= 16), nesting[-1])
        spec = CollectionSpec(
            name=body.name,
            dim=body.dim,
            nesting=tuple(nesting),
            shortlist_dim=shortlist_dim,
            metric=body.metric,
            backend=backend_name,
            dtype=body.dtype,
            default_plan=body.default_plan,
        )
        backend.create(check_spec(spec))  # checked here too: the same errors on every backend
        return info_model(body.name)

    @app.get("/v1/collections", response_model=CollectionList, tags=["collections"])
    def list_collections(_: str = Read) -> CollectionList:
        """Every collection with its parameters and count, sorted by name."""
        return CollectionList(collections=[info_model(s.name) for s in backend.collections()])

    @app.get("/v1/collections/{name}", response_model=CollectionInfo, tags=["collections"])
    def get_collection(name: CollectionName, _: str = Read) -> CollectionInfo:
        """One collection: parameters, count and memory."""
        return info_model(name)

    @app.delete("/v1/collections/{name}", response_model=Deleted, tags=["collections"])
    def drop_collection(name: CollectionName, _: str = Write) -> Deleted:
        """Delete a collection and everything in it."""
        backend.drop(name)
        return Deleted(deleted=1)

    # ---------------------------------------------------------------- items
    @app.post(
        "/v1/collections/{name}/items",
        response_model=ItemsAdded,
        status_code=201,
        tags=["items"],
    )
    def add_items(name: CollectionName, body: ItemsAdd, _: str = Write) -> ItemsAdded:
        """Add items atomically: ids with vectors or texts, optional JSON payloads."""
        if (body.vectors is None) == (body.texts is None):
            raise InputError("give either vectors or texts with the ids (exactly one of them)")
        limits.check("max_vectors", len(body.ids), "the number of items")
        spec = backend.spec(name)
        x = rows_of(body.vectors, body.texts, spec, "vectors")
        backend.add(name, np.asarray(body.ids, dtype=np.int64), x, body.payloads)
        return ItemsAdded(added=len(body.ids))

    @app.get("/v1/collections/{name}/items/{item_id}", response_model=Item, tags=["items"])
    def get_item(name: CollectionName, item_id: ItemIdPath, _: str = Read) -> Item:
        """One item's full vector and payload."""
        vector, payload = backend.get(name, item_id)
        return Item(id=item_id, vector=vector.tolist(), payload=payload)

    @app.delete("/v1/collections/{name}/items", response_model=Deleted, tags=["items"])
    def delete_items(name: CollectionName, body: ItemsDelete, _: str = Write) -> Deleted:
        """Delete items by id, atomically (404 naming the first absent id: nothing deleted)."""
        limits.check("max_vectors", len(body.ids), "the number of ids")
        return Deleted(deleted=backend.delete(name, np.asarray(body.ids, dtype=np.int64)))

    # ---------------------------------------------------------------- search
    @app.post("/v1/collections/{name}/search", response_model=SearchResponse, tags=["search"])
    def search(name: CollectionName, body: SearchRequest, _: str = Read) -> SearchResponse:
        """Top-k of one query or a batch, under a plan, a target recall, or the default plan."""
        given = [f for f in ("vector", "vectors", "text", "texts") if getattr(body, f) is not None]
        if len(given) != 1:
            raise InputError(
                f"give exactly one of vector, vectors, text, texts; got {given or 'none'}"
            )
        limits.check("max_k", body.k, "k")
        batch = body.vectors or body.texts or [body.vector or body.text]
        limits.check("max_queries", len(batch), "the number of queries")
        spec = backend.spec(name)
        texts = body.texts or ([body.text] if body.text is not None else None)
        q = rows_of(batch if texts is None else None, texts, spec, "query vectors")
        plan, source = plan_of(body, spec, body.k)
        hits = backend.search(name, q, body.k, plan)
        found = [row[row >= 0] for row in np.atleast_2d(hits.ids)]  # -1: fewer than k found
        scores = [s[: len(f)] for s, f in zip(np.atleast_2d(hits.scores), found, strict=True)]
        payloads: list = [None] * len(found)
        if body.include_payloads:
            flat = backend.payloads(name, np.concatenate(found))
            ends = np.cumsum([len(f) for f in found])
            payloads = [flat[e - len(f) : e] for e, f in zip(ends, found, strict=True)]
        return SearchResponse(
            results=[
                QueryHits(ids=f.tolist(), scores=s.tolist(), payloads=p)
                for f, s, p in zip(found, scores, payloads, strict=True)
            ],
            plan=str(plan),
            plan_source=source,
            stats={key: float(v) for key, v in hits.stats.items()},
        )

    # ---------------------------------------------------------------- tuning
    @app.post("/v1/collections/{name}/tune", response_model=TuneResponse, tags=["search"])
    def tune_collection(name: CollectionName, body: TuneRequest, _: str = Write) -> TuneResponse:
        """Measure the candidate plans on sample queries; store the table for `target_recall`."""
        store = getattr(backend, "set_tuning", None)
        if store is None:
            raise ConfigError(
                f"the {backend_name} backend does not store tuned plans yet; search with an "
                "explicit plan instead"
            )
        limits.check("max_vectors", len(body.vectors), "the number of sample queries")
        info = backend.info(name)
        q = rows_of(body.vectors, None, info["spec"], "query vectors")
        table = tune(backend, info["spec"], info["count"], q, body.k)
        store(name, table)
        return TuneResponse(**table)

    return app
