"""Issue 3's PostgreSQL figure: dispatch throughput with the gate, one dispatcher vs two
concurrent dispatchers (threads, each with its own Store / connection pool) on the same
database, after ingesting a stream. Run: python bench/pg_dispatchers.py [EVENTS_FILE]"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Timer, build_engine, pg_database, quiet, rate, shipped_project  # noqa: E402
from bench.parts import ingest, parse  # noqa: E402
from engine.dryrun.replay import default_until  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "pg-dispatchers"


def run(dispatchers: int, events, project) -> dict:
    with pg_database(name=f"bench_engine_d{dispatchers}") as url:
        first, info = ingest(project, events, url, OUT / f"ingest-{dispatchers}", log=lambda *_: None)
        first.close()
        until = default_until(project, events)
        engines = [build_engine(project, url, OUT / f"d{dispatchers}-{i}", until) for i in range(dispatchers)]
        reports = [None] * dispatchers
        barrier = threading.Barrier(dispatchers)

        def work(i):
            barrier.wait()
            reports[i] = engines[i].dispatch(until, virtual=True)

        timer = Timer()
        threads = [threading.Thread(target=work, args=(i,)) for i in range(dispatchers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = timer.seconds
        handled = sum(r.handled for r in reports)
        sent = sum(r.by_outcome.get("sent", 0) for r in reports)
        for e in engines:
            e.close()
        return {"dispatchers": dispatchers, "ingest_events_per_s": info["events_per_s"],
                "messages": info["messages_scheduled"], "decisions": handled, "sent": sent,
                "seconds": round(seconds, 1), "decisions_per_s": round(rate(handled, seconds)),
                "messages_per_s": round(rate(info["messages_scheduled"], seconds))}


def main() -> None:
    quiet()
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench/out/events-10000c-100000e.jsonl")
    project = shipped_project()
    events, _ = parse(project, path)
    for n in (1, 2):
        print(run(n, events, project), flush=True)


if __name__ == "__main__":
    main()
