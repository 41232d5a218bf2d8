"""Profile the engine's hot paths with cProfile on a smaller stream (default 100k events).

    python bench/profile_paths.py                       # ingest, dispatch, dry-run
    python bench/profile_paths.py --paths ingest --top 40

For each path it writes bench/out/profile-PATH.prof (open with `python -m pstats`) and
bench/out/profile-PATH.txt (top functions by own time and by cumulative time), and
prints the wall time under the profiler. The profiler slows Python-heavy code by
roughly 1.5-2x, so compare shares, not seconds."""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import generate  # noqa: E402
import parts  # noqa: E402

from engine.dryrun import report  # noqa: E402
from engine.dryrun.replay import default_until, run_dry  # noqa: E402

PATHS = ("ingest", "dispatch", "dryrun")


def dump(profile: cProfile.Profile, name: str, top: int, wall: float) -> None:
    profile.dump_stats(str(common.OUT / f"profile-{name}.prof"))
    text = io.StringIO()
    text.write(f"{name}: {wall:.2f} s wall under the profiler\n\n")
    for key in ("tottime", "cumulative"):
        stats = pstats.Stats(profile, stream=text)
        stats.strip_dirs().sort_stats(key).print_stats(top)
    (common.OUT / f"profile-{name}.txt").write_text(text.getvalue(), encoding="utf-8")
    print(f"{name}: {wall:.2f} s under the profiler -> bench/out/profile-{name}.txt", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--events", type=int, default=100_000, help="events in the generated stream [100000]")
    parser.add_argument("--customers", type=int, default=10_000, help="customers [10000]")
    parser.add_argument("--events-file", type=Path, help="use this file instead of generating one")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {','.join(PATHS)}")
    parser.add_argument("--top", type=int, default=30, help="functions listed per table [30]")
    args = parser.parse_args(argv)
    paths = [p for p in args.paths.split(",") if p]
    common.quiet()
    project = common.shipped_project()
    path = args.events_file or common.OUT / f"events-{args.customers}c-{args.events}e.jsonl"
    if not path.exists():
        generate.generate(args.customers, args.events, path)
    events, _ = parts.parse(project, path)
    figures = {}

    if "ingest" in paths or "dispatch" in paths:
        engine = common.build_engine(project, common.sqlite_url(common.OUT / "profile.db"),
                                     common.OUT / "outbox-profile", events[0].time)
        engine.clock.set(events[-1].time)
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        result = engine.ingest(events, virtual=True)
        profile.disable()
        wall = time.perf_counter() - started
        figures["ingest"] = {"events": len(events), "scheduled": len(result.scheduled), "profiled_s": round(wall, 2)}
        if "ingest" in paths:
            dump(profile, "ingest", args.top, wall)
        if "dispatch" in paths:
            until = default_until(project, events)
            engine.clock.set(until)
            profile = cProfile.Profile()
            started = time.perf_counter()
            profile.enable()
            result = engine.dispatch(until, virtual=True)
            profile.disable()
            wall = time.perf_counter() - started
            figures["dispatch"] = {"messages": result.handled, "by_outcome": result.by_outcome,
                                   "profiled_s": round(wall, 2)}
            dump(profile, "dispatch", args.top, wall)
        engine.close()

    if "dryrun" in paths:
        with path.open(encoding="utf-8") as fh:
            lines = list(enumerate(fh, start=1))
        tz = project.config.timezone
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        result = run_dry(project, lines)
        size = sum(len(json.dumps(report.record(d, project.rules, tz), ensure_ascii=False)) for d in result.decisions)
        profile.disable()
        wall = time.perf_counter() - started
        figures["dryrun"] = {"events": result.events, "decisions": len(result.decisions), "json_bytes": size,
                             "profiled_s": round(wall, 2)}
        dump(profile, "dryrun", args.top, wall)
    print(json.dumps(figures, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
