"""Issue 5's intake figures: POST /events throughput (events/s, one event per request and
batches of JSON lines) and event-to-enqueue latency (p50/p99 of the request: 202 comes
back once the events are stored and their messages scheduled), on SQLite and PostgreSQL.

The daemon's HTTP API (uvicorn + Starlette, build_app) serves in this process on a
loopback port; the load comes from a separate process with several client threads
(httpx, keep-alive). Run:

    python bench/http_intake.py [--db sqlite,postgresql] [--single 5000] [--batched 50000]
                                [--batch 200] [--clients 4]"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from bench.generate import generate  # noqa: E402
from engine.app import Engine  # noqa: E402
from engine.clock import SystemClock  # noqa: E402
from engine.config.http import HttpConfig  # noqa: E402
from engine.daemon.http import build_app  # noqa: E402
from engine.daemon.server import HttpServer  # noqa: E402
from engine.store import Store  # noqa: E402

TOKEN = "bench-token"


def client(url: str, bodies: list[bytes], clients: int, out) -> None:
    """In its own process: post `bodies` from `clients` threads; report latencies."""
    import httpx

    latencies: list[float] = []
    lock = threading.Lock()
    queue = list(reversed(bodies))
    failures = []

    def work():
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                started = time.perf_counter()
                response = http.post(url, content=body, headers={"Content-Type": "application/x-ndjson"})
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != 202:
                        failures.append(response.status_code)

    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({"seconds": time.perf_counter() - started, "latencies": latencies, "failures": failures})


def measure(url: str, lines: list[str], per_request: int, clients: int) -> dict:
    project = common.shipped_project()
    cfg = HttpConfig(host="127.0.0.1", port=0, max_body=64 * 1024 * 1024)
    common.gcsetting.tune()  # as run.py does
    engine = Engine(project, Store(url), common.file_channels(project, common.OUT / "outbox-http"), SystemClock())
    server = HttpServer(build_app(engine, cfg, environ={"ENGINE_TOKEN": TOKEN}), "127.0.0.1", 0)
    server.start()
    try:
        bodies = ["".join(lines[i:i + per_request]).encode() for i in range(0, len(lines), per_request)]
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        proc = ctx.Process(target=client, args=(f"http://127.0.0.1:{server.address[1]}/events", bodies, clients, out))
        proc.start()
        result = out.get()
        proc.join()
        stored = engine.store.count("events")
    finally:
        server.stop()
        engine.close()
    lat = sorted(result["latencies"])
    return {"events": len(lines), "per_request": per_request, "clients": clients, "stored": stored,
            "failed_requests": len(result["failures"]), "seconds": round(result["seconds"], 2),
            "events_per_s": round(len(lines) / result["seconds"]),
            "p50_ms": round(statistics.median(lat) * 1000, 1),
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--single", type=int, default=5000, help="events sent one per request [5000]")
    parser.add_argument("--batched", type=int, default=50000, help="events sent in batches [50000]")
    parser.add_argument("--batch", type=int, default=200, help="events per batched request [200]")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client connections [4]")
    args = parser.parse_args(argv)
    common.quiet()
    path = common.OUT / "events-10000c-100000e.jsonl"
    if not path.exists():
        generate(10_000, 100_000, path)
    with path.open(encoding="utf-8") as fh:
        lines = [line if line.endswith("\n") else line + "\n" for line in fh if line.strip()]
    results = {"machine": common.machine()}
    for db in args.db.split(","):
        for label, count, per_request in (("single", args.single, 1), ("batched", args.batched, args.batch)):
            chunk = lines[:count]
            if not chunk:
                continue
            if db == "sqlite":
                figures = measure(common.sqlite_url(common.OUT / "bench-http.db"), chunk, per_request, args.clients)
            else:
                if common.pg_version(common.PG_ADMIN_URL) is None:
                    print("postgresql: not reachable; skipped", file=sys.stderr)
                    break
                with common.pg_database(name="bench_engine_http") as url:
                    figures = measure(url, chunk, per_request, args.clients)
            results[f"{db}-{label}"] = figures
            print(f"{db} {label}: {json.dumps(figures)}", file=sys.stderr)
    (common.OUT / "http-intake.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
