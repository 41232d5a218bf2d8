"""The daemon's HTTP API, on Starlette served by uvicorn (no HTTP parsing of our own).

    POST /events   one JSON event, a JSON array of events, or JSON lines
                   -> 202 {"accepted": [ids], "duplicates": [ids]}
                   -> 400 with every rejected line / item and its reason (the valid
                      ones are still stored; the rejected ones are kept in the
                      rejected_events table); 401 bad credentials; 413 too large
    GET  /healthz  200 {"status": "ok" | "degraded", ...} or 503 {"status": "error", ...} with what is wrong
    GET  /metrics  Prometheus text format

A sender proves who it is with `Authorization: Bearer <token>` or with
`X-Signature: sha256=<hex HMAC-SHA256 of the raw body>`; the secrets come from the
environment variables that config.yaml `http:` names, and are never logged."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

from loguru import logger
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.config.http import HttpConfig
from engine.errors import EventError
from engine.intake.events import AHEAD, Event, decode_json, parse_event, rejected_later
from engine.rules.sms import sms_channels

log = logger.bind(component="http")
SIGNATURE_HEADER = "X-Signature"
MAX_EVENTS = 10_000  # events in one request (README "Limits"); more: 413
BODY_SECONDS = 30  # the longest a request's body may take to arrive; then 408
SHANGHAI = ZoneInfo("Asia/Shanghai")  # Aliyun's push times are mainland time


class TooLarge(Exception):
    pass


@dataclass
class Item:
    """One event of a request body: where it was (line of JSON lines, or position in an
    array, from 1), its raw text, and the decoded value or why it could not be read."""

    line: int
    raw: str
    value: Any = None
    error: str | None = None


class NotUtf8Body(ValueError):
    """A request body that is not UTF-8 text."""


def split_body(body: bytes) -> list[Item]:
    """A body as items: a JSON object (one event), a JSON array (one item per element),
    or JSON lines (one item per non-blank line, each decoded on its own). A number,
    text or nesting intake refuses is found in each item on its own (engine.events).
    NotUtf8Body when the body is not UTF-8."""
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise NotUtf8Body(f"the body is not UTF-8 text (byte {exc.start + 1}); send UTF-8") from None
    stripped = text.strip()
    if not stripped:
        return []
    if stripped[0] in "[{":
        try:
            whole = decode_json(stripped)
        except EventError:
            whole = None  # JSON lines, or broken: read line by line
        else:
            if isinstance(whole, list):
                return [Item(i, _raw(v), v) for i, v in enumerate(whole, start=1)]
            return [Item(1, stripped, whole)]
    items = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append(Item(number, line.rstrip("\r"), decode_json(line)))
        except EventError as exc:
            items.append(Item(number, line.rstrip("\r"), error=str(exc)))
    return items


def _raw(value) -> str:
    """An array item as text for the rejected_events table (a refused number as null;
    a text the database could not store, an unpaired surrogate, escaped)."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=lambda _invalid: None)
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return json.dumps(value, default=lambda _invalid: None)
    except (ValueError, RecursionError):  # nesting deeper than json.dumps goes
        return "(nested too deep to show)"


class Credentials:
    """The secrets named in config.yaml, read from the environment when checked (so an
    operator can rotate them with a restart, and tests can set them)."""

    def __init__(self, cfg: HttpConfig, environ: dict[str, str] | None = None):
        self.cfg = cfg
        self.environ = os.environ if environ is None else environ

    @property
    def token(self) -> str | None:
        return self.environ.get(self.cfg.token_env) or None

    @property
    def hmac_secret(self) -> str | None:
        return self.environ.get(self.cfg.hmac_env) or None

    @property
    def configured(self) -> bool:
        return bool(self.token or self.hmac_secret)

    def check(self, headers, body: bytes) -> str | None:
        """None when the request is authentic, else why not (without any secret)."""
        auth = headers.get("authorization")
        signature = headers.get(SIGNATURE_HEADER.lower())
        if auth is not None:
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not given.strip():
                return "Authorization header is not 'Bearer <token>'"
            if self.token is None:
                return f"bearer tokens are not accepted here ({self.cfg.token_env} is not set)"
            if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                return "wrong bearer token"
            return None
        if signature is not None:
            if self.hmac_secret is None:
                return f"signatures are not accepted here ({self.cfg.hmac_env} is not set)"
            algorithm, _, given = signature.partition("=")
            if algorithm.strip().lower() != "sha256" or not given.strip():
                return f"{SIGNATURE_HEADER} is not 'sha256=<hex digest>'"
            expected = hmac.new(self.hmac_secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(given.strip().lower().encode(), expected.encode()):
                return "signature does not match the body"
            return None
        return (f"no credentials: send Authorization: Bearer <token> or {SIGNATURE_HEADER}: sha256=<HMAC-SHA256 "
                "of the body>")


@dataclass
class _Job:
    """One request's events waiting to be stored."""

    events: list[Event]
    rejected: list[dict]
    source: str
    duplicates: list[str] | None = None  # set once stored
    error: BaseException | None = None
    refused: list = field(default_factory=list)  # (event, reason): refused when stored


class StoreUnavailable(RuntimeError):
    """The database did not answer: nothing of the request was stored."""


class GroupCommit:
    """What POST /events does with a parsed body (the HTTP side of engine.intake): store
    the valid events, keep the rejected ones. The store takes one writer at a time, so requests that arrive while
    a write is under way are stored together by the next writer, in one transaction
    (group commit): a burst of one-event requests costs a few transactions, not one each."""

    def __init__(self, engine, on_events: Callable[[int, int, int], None] | None = None):
        self.engine = engine
        self.lock = threading.Lock()  # the writer
        self._queue_lock = threading.Lock()
        self._waiting: list[_Job] = []
        self.on_events = on_events

    def take(self, items: list[Item], source: str) -> dict:
        tz = self.engine.project.config.timezone
        latest = self.engine.clock.now() + AHEAD
        events: list[Event] = []
        rejected: list[dict] = []
        for item in items:
            if item.error is None:
                try:
                    event = parse_event(item.value, tz, latest)
                    event.line = item.line
                    events.append(event)
                    continue
                except EventError as exc:
                    item.error = str(exc)
            rejected.append({"line": item.line, "reason": item.error, "raw": item.raw})
        job = _Job(events, rejected, source)
        with self._queue_lock:
            self._waiting.append(job)
        with self.lock:
            if job.duplicates is None and job.error is None:  # not stored by the writer before us: write
                with self._queue_lock:
                    group, self._waiting = self._waiting, []
                self._store(group)
        if job.error is not None:
            raise job.error
        duplicates = job.duplicates or []
        refused = {id(event) for event, _ in job.refused}
        accepted = [e.id for e in events if id(e) not in refused]
        rejected = sorted(rejected + [{"line": event.line, "reason": reason} for event, reason in job.refused],
                          key=lambda r: r["line"])
        if self.on_events:
            self.on_events(len(accepted) - len(duplicates), len(duplicates), len(rejected))
        return {"accepted": accepted, "duplicates": duplicates,
                "rejected": [{"line": r["line"], "reason": r["reason"]} for r in rejected]}

    def _store(self, group: list[_Job]) -> None:
        try:
            now = self.engine.clock.now()
            rejected = [{"source": job.source, "line": r["line"], "raw": r["raw"], "reason": r["reason"],
                         "received_at": now} for job in group for r in job.rejected]
            if rejected:
                self.engine.store.reject(rejected)
            events = [e for job in group for e in job.events]
            report = self.engine.ingest(events) if events else None
            if report is not None and report.rejected:  # refused when stored: kept like the others
                by_event = {id(e): job for job in group for e in job.events}
                for event, reason in report.rejected:
                    by_event[id(event)].refused.append((event, reason))
                for job in group:
                    self.engine.store.reject(rejected_later(job.refused, job.source, now))
        except BaseException as exc:  # the database is away: every request of the group is told (503)
            error = StoreUnavailable() if not self.engine.store.answers() else exc
            for job in group:
                job.error = error
            if error is exc:
                raise
            return
        repeated = set(report.duplicate_ids) if report else set()
        for job in group:
            job.duplicates = sorted({e.id for e in job.events} & repeated)

    def replies(self, replies: list[dict]) -> int:
        """Unsubscribe the senders of T / TD / 退订 / R replies from every SMS channel, as
        `customer.unsubscribed` events (idempotent: one event id per reply and customer)."""
        config = self.engine.project.config
        sms = sorted(sms_channels(config))
        events: list[Event] = []
        now = self.engine.clock.now()
        for reply in replies:
            if str(reply.get("content", "")).strip().lower() not in UNSUBSCRIBE_WORDS:
                continue
            phone = str(reply.get("phone_number", ""))
            try:
                when = (datetime.strptime(str(reply.get("send_time")), "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
                        .astimezone(timezone.utc))
            except ValueError:
                when = now
            ref = reply.get("sequence_id") or f"{phone}/{reply.get('send_time')}"
            for customer_id in self.engine.store.customers_by_phone(phone):
                for channel in sms:
                    events.append(Event(f"smsup-{ref}-{customer_id}-{channel}", "customer.unsubscribed", when,
                                        {"id": customer_id}, None, {"channel": channel, "source": "sms reply"}))
        if events:
            with self.lock:
                self.engine.ingest(events)
        return len({e.customer["id"] for e in events})


UNSUBSCRIBE_WORDS = {"t", "td", "退订", "r"}


class _Refused(Exception):
    """A request answered early: the response to send."""

    def __init__(self, response: Response):
        super().__init__()
        self.response = response


def build_app(engine, cfg: HttpConfig, *, metrics=None, health: Callable[[], dict] | None = None,
              environ: dict[str, str] | None = None) -> Starlette:
    routes = _Routes(engine, cfg, metrics, health, environ)
    return Starlette(routes=[
        Route("/events", routes.post_events, methods=["POST"]),
        Route("/sms/replies", routes.sms_replies, methods=["POST"]),
        Route("/healthz", routes.healthz, methods=["GET"]),
        Route("/metrics", routes.get_metrics, methods=["GET"]),
    ])


class _Routes:
    """The daemon's HTTP endpoints over one engine."""

    def __init__(self, engine, cfg: HttpConfig, metrics, health: Callable[[], dict] | None,
                 environ: dict[str, str] | None):
        self.cfg = cfg
        self.metrics = metrics
        self.health = health
        self.credentials = Credentials(cfg, environ)
        self.intake = GroupCommit(engine, metrics.events if metrics is not None else None)

    async def read_body(self, request: Request) -> bytes:
        """The body, within http.max_body and BODY_SECONDS (a sender trickling bytes does
        not hold a connection open: asyncio.TimeoutError)."""
        cfg = self.cfg
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cfg.max_body:
            raise TooLarge()

        async def read() -> bytes:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > cfg.max_body:
                    raise TooLarge()
                chunks.append(chunk)
            return b"".join(chunks)

        return await asyncio.wait_for(read(), BODY_SECONDS)

    @staticmethod
    def slow(client: str, path: str) -> Response:
        log.warning("{} from {} refused (408): the body did not arrive within {} s", path, client, BODY_SECONDS)
        return JSONResponse({"error": f"the body did not arrive within {BODY_SECONDS} seconds"}, status_code=408)

    async def post_events(self, request: Request) -> Response:
        client = request.client.host if request.client else "?"
        try:
            items = await self._event_items(request, client)
        except _Refused as refused:
            return refused.response
        try:
            result = await run_in_threadpool(self.intake.take, items, f"http:{client}")
        except StoreUnavailable:
            log.error("POST /events from {}: the database does not answer; nothing stored (503)", client)
            return JSONResponse({"error": "the database does not answer; nothing was stored: send again later"},
                                status_code=503, headers={"Retry-After": "5"})
        if result["rejected"]:
            shown = "; ".join(f"line {r['line']}: {r['reason']}" for r in result["rejected"][:3])
            log.warning("POST /events from {}: {} rejected ({}), {} stored", client, len(result["rejected"]),
                        shown, len(result["accepted"]))
            return JSONResponse({"error": _rejected(len(result["rejected"]), len(items)), **result}, status_code=400)
        del result["rejected"]
        return JSONResponse(result, status_code=202)

    async def _event_items(self, request: Request, client: str) -> list[Item]:
        """The request's events, or _Refused: credentials (a token before the body is
        read), size, time, encoding and count."""
        cfg, credentials = self.cfg, self.credentials
        if not credentials.configured:
            log.warning("POST /events from {} refused: no credentials configured", client)
            raise _Refused(JSONResponse(
                {"error": f"the HTTP intake has no credentials: set {cfg.token_env} (bearer token) "
                          f"or {cfg.hmac_env} (HMAC secret) in the daemon's environment"}, status_code=503))

        def refused(problem: str) -> _Refused:
            log.warning("POST /events from {} refused (401): {}", client, problem)
            return _Refused(JSONResponse({"error": problem}, status_code=401,
                                         headers={"WWW-Authenticate": "Bearer"}))

        bearer = "authorization" in request.headers
        if bearer or SIGNATURE_HEADER.lower() not in request.headers:
            if (problem := credentials.check(request.headers, b"")) is not None:
                raise refused(problem)  # a token, or no credentials at all: judged before the body is read
        try:
            body = await self.read_body(request)
        except TooLarge:
            log.warning("POST /events from {} refused: body over {} bytes", client, cfg.max_body)
            raise _Refused(JSONResponse({"error": f"body larger than {_size(cfg.max_body)} (http.max_body); "
                                                  "send fewer events per request"}, status_code=413)) from None
        except asyncio.TimeoutError:
            raise _Refused(self.slow(client, "POST /events")) from None
        except ClientDisconnect:
            raise _Refused(Response(status_code=400)) from None
        if not bearer and (problem := credentials.check(request.headers, body)) is not None:
            raise refused(problem)  # a signature needs the body
        try:
            items = split_body(body)
        except NotUtf8Body as exc:
            log.warning("POST /events from {} refused (400): {}", client, exc)
            raise _Refused(JSONResponse({"error": str(exc)}, status_code=400)) from None
        if not items:
            raise _Refused(JSONResponse(
                {"error": "empty body: send one JSON event, a JSON array of events, or JSON lines"}, status_code=400))
        if len(items) > MAX_EVENTS:
            log.warning("POST /events from {} refused (413): {} events", client, len(items))
            raise _Refused(JSONResponse({"error": f"{len(items)} events in one request; send at most "
                                                  f"{MAX_EVENTS:,} per request"}, status_code=413))
        return items

    async def sms_replies(self, request: Request) -> Response:
        """Aliyun SmsUp push: the customers' replies. T / TD / 退订 / R (any case) unsubscribe
        that number from marketing SMS. Aliyun cannot send our headers: the token may
        also come as ?token=... in the push URL configured at Aliyun."""
        client = request.client.host if request.client else "?"
        cfg, credentials = self.cfg, self.credentials
        if not credentials.configured:
            return JSONResponse({"code": 1, "msg": f"set {cfg.token_env} or {cfg.hmac_env}"}, status_code=503)
        headers = dict(request.headers)
        token = request.query_params.get("token")
        if token is not None and "authorization" not in headers:
            headers["authorization"] = f"Bearer {token}"
        if "authorization" in headers or SIGNATURE_HEADER.lower() not in headers:
            if (problem := credentials.check(headers, b"")) is not None:  # before the body is read
                log.warning("POST /sms/replies from {} refused (401): {}", client, problem)
                return JSONResponse({"code": 1, "msg": problem}, status_code=401)
        try:
            body = await self.read_body(request)
        except TooLarge:
            return JSONResponse({"code": 1, "msg": "body too large"}, status_code=413)
        except asyncio.TimeoutError:
            return self.slow(client, "POST /sms/replies")
        problem = credentials.check(headers, body)
        if problem is not None:
            log.warning("POST /sms/replies from {} refused (401): {}", client, problem)
            return JSONResponse({"code": 1, "msg": problem}, status_code=401)
        try:
            replies = json.loads(body)
            if isinstance(replies, dict):
                replies = [replies]
            if not isinstance(replies, list) or not all(isinstance(r, dict) for r in replies):
                raise ValueError("not a list of objects")
        except ValueError as exc:
            return JSONResponse({"code": 1, "msg": f"expected Aliyun's SmsUp JSON array: {exc}"}, status_code=400)
        done = await run_in_threadpool(self.intake.replies, replies)
        log.info("SmsUp from {}: {} replies, {} customers unsubscribed from marketing SMS", client, len(replies), done)
        return JSONResponse({"code": 0, "msg": "接收成功"})

    async def healthz(self, request: Request) -> Response:
        state = await run_in_threadpool(self.health) if self.health else {"status": "ok"}
        return JSONResponse(state, status_code=503 if state.get("status") == "error" else 200)

    async def get_metrics(self, request: Request) -> Response:
        if self.metrics is None:
            return Response(status_code=404)
        text, content_type = await run_in_threadpool(self.metrics.render)
        return Response(text, media_type=content_type)


def _rejected(rejected: int, total: int) -> str:
    if total == 1:
        return "the event was rejected; nothing was stored"
    if rejected == total:
        return f"all {total} events were rejected; nothing was stored"
    return f"{rejected} of {total} events rejected; the other {total - rejected} were stored"


def _size(n: int) -> str:
    if n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    if n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} bytes"
