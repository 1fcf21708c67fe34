"""The ``trace-service`` command: dev, api, worker, deliver, report, migrate, replay, simulate. A composition
root: nothing imports it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from trace_service import __version__
from trace_service.logging import configure_logging
from trace_service.settings import Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    if getattr(args, "kafka_bootstrap", None):
        overrides["kafka_bootstrap"] = args.kafka_bootstrap
    settings = load_settings(**overrides)
    configure_logging(settings.log_format, settings.log_level)
    return settings


def cmd_migrate(args: argparse.Namespace) -> int:
    from trace_service.db.engine import migrate
    from trace_service.kafka import ensure_topics

    settings = _settings(args)
    migrate(settings.database_url)
    print("database migrated", file=sys.stderr)  # noqa: T201
    if not args.no_topics:
        asyncio.run(ensure_topics(settings))
        print("topics ready", file=sys.stderr)  # noqa: T201
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from trace_service.api.app import create_app

    settings = _settings(args)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=15,
        # uvicorn's own bound on buffered headers (h11 only; httptools has none): above the app's limit,
        # by room for the request line, so that a client normally hears the app's 431 with its error body.
        h11_max_incomplete_event_size=settings.max_header_bytes + 8192,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from trace_service.worker.main import run_worker

    settings = _settings(args)
    if args.group:
        settings = settings.model_copy(update={"consumer_group": args.group})

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(main())
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    from trace_service.access.integrators import SigningNotConfigured
    from trace_service.delivery.main import run_deliverer

    settings = _settings(args)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_deliverer(settings, stop, instance=args.instance)

    try:
        asyncio.run(main())
    except SigningNotConfigured as exc:
        print(f"trace-service deliver: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import date

    from sqlalchemy.exc import DBAPIError

    from trace_service.db.engine import create_engine
    from trace_service.reporting.service import run
    from trace_service.runtime.replay import DATABASE_FILE

    def say(message: str) -> None:
        print(f"[trace-service report] {message}", file=sys.stderr, flush=True)  # noqa: T201

    try:
        day = date.fromisoformat(args.date)
    except ValueError:
        say(f"error: --date must be YYYY-MM-DD, not {args.date!r}")
        return 2
    if not args.database_url and "TRACE_DATABASE_URL" not in os.environ:
        # Next to a running `trace-service dev`: its embedded database.
        with contextlib.suppress(OSError):
            args.database_url = (Path(args.data_dir) / DATABASE_FILE).read_text().strip() or None
    settings = _settings(args)
    if args.no_push:
        settings = settings.model_copy(update={"report_url": None})
    out = Path(args.out or settings.report_dir)

    async def main() -> bool:
        engine = create_engine(settings, pool_size=2, statement_timeout_ms=600_000, name="report")
        try:
            result = await run(engine, settings, day, out, say, push_attempts=args.push_attempts)
        finally:
            await engine.dispose()
        return result.complete

    try:
        complete = asyncio.run(main())
    except (OSError, DBAPIError) as exc:
        # A database that is down, unreachable or not migrated: say so, without a traceback.
        reason = getattr(exc, "orig", None) or exc
        say(f"error: cannot read the events from the database: {type(reason).__name__}: {str(reason).splitlines()[0]}")
        say("is `trace-service dev` running on --data-dir, or TRACE_DATABASE_URL set and migrated?")
        return 3
    if not complete:
        say("the push is incomplete; run the same command again to resume it")
    return 0 if complete else 1


def cmd_dev(args: argparse.Namespace) -> int:
    from trace_service.runtime.dev import run_dev

    return run_dev(host=args.host, port=args.port, data_dir=Path(args.data_dir), workers=args.workers, demo=args.demo)


def cmd_schemas(args: argparse.Namespace) -> int:
    from trace_service.contract.events import build_catalogue
    from trace_service.contract.schemas import render_schemas

    out = Path(args.out)
    wanted = {name: text.encode() for name, text in render_schemas(build_catalogue()).items()}
    present = {p.relative_to(out).as_posix() for p in out.rglob("*.schema.json")} if out.is_dir() else set()
    missing = sorted(wanted.keys() - present)
    extra = sorted(present - wanted.keys())
    differ = sorted(name for name in wanted.keys() & present if (out / name).read_bytes() != wanted[name])
    if args.check:
        for label, names in (("differs", differ), ("missing", missing), ("extra", extra)):
            for name in names:
                print(f"{label}: {out / name}", file=sys.stderr)  # noqa: T201
        if differ or missing or extra:
            print("schemas are out of date; run: trace-service schemas", file=sys.stderr)  # noqa: T201
            return 1
        print(f"{len(wanted)} schema files in {out} are up to date", file=sys.stderr)  # noqa: T201
        return 0
    for name in [*differ, *missing]:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wanted[name])
        print(f"wrote {path}", file=sys.stderr)  # noqa: T201
    for name in extra:
        (out / name).unlink()
        print(f"removed {out / name}", file=sys.stderr)  # noqa: T201
    print(f"{len(wanted)} schema files in {out} are up to date", file=sys.stderr)  # noqa: T201
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from trace_service.runtime.replay import run_replay

    return run_replay(
        args.url, args.token, args.scenario, args.tag, Path(args.data_dir), accept_existing=args.accept_existing
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    import os
    from datetime import date

    import orjson

    from trace_service.sim import runner
    from trace_service.sim.city import build_city
    from trace_service.sim.events import simulate

    def say(message: str) -> None:
        print(f"[trace-service simulate] {message}", file=sys.stderr, flush=True)  # noqa: T201

    try:
        end = date.fromisoformat(args.end) if args.end else None
        sim = simulate(
            build_city(args.seed, args.scale), days=args.days, end=end, anomalies=args.anomalies,
            imports=args.imports, reading_minutes=args.reading_minutes,
        )  # fmt: skip
    except ValueError as exc:
        say(f"error: {exc}")
        return 2
    runner.describe(sim, say)
    if args.events:
        with Path(args.events).open("wb") as f:
            for event in sim.events:
                f.write(orjson.dumps(event) + b"\n")
        say(f"events written to {args.events}")
    from trace_service.runtime.replay import default_url

    args.url = args.url or default_url(Path(args.data_dir))
    summary = None
    out = None if args.quiet else sys.stderr
    topic = args.topic or os.environ.get("TRACE_TOPIC_EVENTS", "trace.events.v1")
    token = runner.find_token(args.token, Path(args.data_dir))
    try:
        if args.dry_run:
            pass
        elif args.via == "kafka":
            bootstrap = args.bootstrap or os.environ.get("TRACE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
            secret = args.integrator_secret or os.environ.get("INTEGRATOR_SECRET")
            integrator = None
            if args.integrator_key_id and secret:
                integrator = runner.Integrator(args.integrator_key_id, secret)
            elif args.integrator_key_id or args.integrator_secret:
                say("error: give both --integrator-key-id and --integrator-secret (or INTEGRATOR_SECRET)")
                return 2
            if token is None:
                say("no admin key: the operators are not registered (pass --token to register them)")
            summary = runner.run_kafka(sim, bootstrap, topic=topic, rate=args.rate, url=args.url, admin=token,
                                       integrator=integrator, concurrency=args.concurrency, out=out)  # fmt: skip
        else:
            if token is None:
                say("no admin key: pass --token, set TRACE_ADMIN_TOKEN, or run from the folder of `trace-service dev`")
                return 2
            summary = runner.run_api(
                sim, args.url, token, batch=args.batch, rate=args.rate, concurrency=args.concurrency,
                bootstrap=args.bootstrap, topic=topic, out=out,
            )  # fmt: skip
    except runner.RunError as exc:
        say(f"error: {exc}")
        return 1
    if summary is not None:
        say(summary.render())
        for line in summary.first_errors:
            say(f"  {line}")
    if args.truth:
        runner.write_truth(Path(args.truth), runner.truth_document(sim, summary))
        say(f"ground truth written to {args.truth}")
    return 0 if summary is None or summary.errors == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trace-service",
        description="Meat and vegetable traceability backend (肉菜流通追溯). Settings come from TRACE_* "
        "environment variables; see the README's configuration table.",
    )
    parser.add_argument("--version", action="version", version=f"trace-service {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def service_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--database-url", help="overrides TRACE_DATABASE_URL")
        p.add_argument("--kafka-bootstrap", help="overrides TRACE_KAFKA_BOOTSTRAP")

    def client_options(p: argparse.ArgumentParser) -> None:  # commands that post to a running service
        p.add_argument("--url", help="the service (default: the `dev` on --data-dir, else http://127.0.0.1:8000)")
        p.add_argument("--token", help="admin key (default: TRACE_ADMIN_TOKEN, else <data-dir>/admin-token)")
        p.add_argument("--data-dir", default=".trace-data", help="where `trace-service dev` keeps its admin token")

    dev = sub.add_parser(
        "dev",
        help="start everything on this machine: embedded Postgres and broker, migrations, API and worker",
        description="Start the whole service for development. Unless TRACE_DATABASE_URL / TRACE_KAFKA_BOOTSTRAP "
        "are set, an embedded PostgreSQL (data kept in --data-dir) and an embedded Kafka-protocol broker "
        "(in memory) are started. Ctrl-C or SIGTERM stops every child cleanly.",
    )
    dev.add_argument("--host", default="127.0.0.1", help="address the API listens on (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=8000, help="port of the API (default 8000)")
    dev.add_argument("--data-dir", default=".trace-data", help="where Postgres keeps its data (default .trace-data)")
    dev.add_argument("--workers", type=int, default=1, choices=range(1, 9), metavar="N", help="worker processes (1-8)")
    dev.add_argument(
        "--demo",
        action="store_true",
        help="once ready, load a simulated week of a small city (with a few faults) through the API in the "
        "background; skipped when the data folder already holds it",
    )
    dev.set_defaults(func=cmd_dev)

    api = sub.add_parser("api", help="run the HTTP API", description="Run the HTTP API (uvicorn).")
    api.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    api.add_argument("--port", type=int, default=8000, help="listen port (default 8000)")
    service_options(api)
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser(
        "worker",
        help="run a projector worker",
        description="Consume the events topic in the consumer group and apply each batch to Postgres. "
        "Run several for more throughput; SIGTERM finishes the batch in hand.",
    )
    worker.add_argument("--group", help="consumer group (default: TRACE_CONSUMER_GROUP, trace-projector)")
    service_options(worker)
    worker.set_defaults(func=cmd_worker)

    rp = sub.add_parser(
        "replay",
        help="post a scenario stream (operators and events) to a running service",
        description="Register a scenario's operators and post its events (events/scenarios/*.json) through the "
        "HTTP API with an admin key, waiting until they are applied, and print what was applied and the alerts "
        "raised. A faulty twin (events/scenarios/faults/, by file or by rule) is replayed under a tag of its own, "
        "next to its base chain. Replaying again changes nothing. An operator already registered with other "
        "details (name, kind, region, parent) stops the replay before anything is posted.",
    )
    rp.add_argument("scenario", nargs="*", help="chains, faults (by rule) or files (default: every normal chain)")
    client_options(rp)
    rp.add_argument("--tag", help="1-4 characters [0-9A-Z] appended to every code, to replay a chain again as new")
    rp.add_argument(
        "--accept-existing",
        action="store_true",
        help="post the events even when an operator is already registered with other details (the registered "
        "one is kept, with a warning)",
    )
    rp.set_defaults(func=cmd_replay)

    sim = sub.add_parser(
        "simulate",
        help="generate a simulated city's days of chain events (with faults) and post them to a running service",
        description="Generate a seeded Zhongshan (farms across the 中南区 provinces, planting bases, designated "
        "slaughterhouses, wholesale markets with their wholesalers, wet markets with stalls, supermarkets, canteens, "
        "importers of frozen meat and the cold stores they keep it in) "
        "and N days of chain events ending yesterday, with each integrity fault injected at the --anomalies rate "
        "and a supply shock on the last day; post them through the API with each operator's key (registering the "
        "operators and issuing the keys with the admin key) or produce them straight to Kafka. The ground truth of "
        "what was injected goes to --truth. The same seed, scale, span and rate give the same events.",
    )
    sim.add_argument("--days", type=int, default=1, help="days to simulate, ending on --end (default 1)")
    sim.add_argument("--seed", type=int, default=1, help="the city and its traffic (default 1)")
    sim.add_argument(
        "--anomalies", type=float, default=0.0, metavar="RATE",
        help="share of chains (pig batches, harvest lots) that carry a fault; > 0 injects every rule at least once "
        "and a supply shock on the last day (default 0)",
    )  # fmt: skip
    sim.add_argument(
        "--imports", type=float, default=1.0, metavar="FACTOR",
        help="imported frozen pork and beef: each importer's standing daily lot (port, customs entry, cold store, "
        "temperature readings, a frozen-meat wholesaler, supermarkets) FACTOR times a day; 0 none but the lots of "
        "the cold_chain_break and import_docs_missing faults (default 1: one lot a day per flow, 2 flows in small)",
    )  # fmt: skip
    sim.add_argument(
        "--reading-minutes", type=int, default=30, metavar="N",
        help="a cold store's temperature reading every N minutes, twelve readings an event (default 30)",
    )  # fmt: skip
    sim.add_argument("--scale", choices=["tiny", "small", "city"], default="small",
                     help="tiny (tests), small (~4k events/day) or city (~150k events/day, 4,000 pigs, 1.5 kt "
                     "vegetables); default small")  # fmt: skip
    sim.add_argument("--end", help="last simulated day, YYYY-MM-DD (default: yesterday, so every event is past)")
    sim.add_argument("--via", choices=["api", "kafka"], default="api", help="post through the API (default) or "
                     "produce straight to Kafka")  # fmt: skip
    client_options(sim)
    sim.add_argument("--bootstrap", help="Kafka bootstrap for --via kafka (default TRACE_KAFKA_BOOTSTRAP), and with "
                     "--via api where the conflicting copies go")  # fmt: skip
    sim.add_argument("--topic", help="events topic (default TRACE_TOPIC_EVENTS, else trace.events.v1)")
    sim.add_argument("--integrator-key-id", help="with --via kafka: sign as this registered integrator (default: "
                     "register one for the city's operators with the admin key)")  # fmt: skip
    sim.add_argument("--integrator-secret", help="the integrator's secret (default: the INTEGRATOR_SECRET "
                     "environment variable, which keeps it off the command line)")  # fmt: skip
    sim.add_argument("--rate", type=float, help="target events per second (default: as fast as possible)")
    sim.add_argument("--batch", type=int, default=500, choices=range(1, 1001), metavar="N",
                     help="events per POST (default 500, at most 1000)")  # fmt: skip
    sim.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    sim.add_argument("--truth", metavar="FILE", help="write the ground truth (JSON) here")
    sim.add_argument("--events", metavar="FILE", help="also write the events here, one JSON object a line")
    sim.add_argument("--dry-run", action="store_true", help="generate (and write --truth / --events) only")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(func=cmd_simulate)

    deliver = sub.add_parser(
        "deliver",
        help="send the shared stream to the webhook subscriptions",
        description="POST the shared stream's items, in seq order and in signed batches (Standard Webhooks), to "
        "every active subscription's URL; retry failures with backoff, pause a subscription after "
        "TRACE_WEBHOOK_PAUSE_AFTER_SECONDS of failures. Several may run at once: each subscription is held by one "
        "of them at a time (a lease), and taken over when its holder dies. SIGTERM finishes the requests in flight.",
    )
    deliver.add_argument("--instance", help="this process's name as a lease holder (default: host:pid:random)")
    deliver.add_argument("--database-url", help="overrides TRACE_DATABASE_URL")
    deliver.set_defaults(func=cmd_deliver)

    report = sub.add_parser(
        "report",
        help="write a day's upward report (NDJSON per node and a manifest) and push it to TRACE_REPORT_URL",
        description="Write the events that occurred on DATE (in TRACE_TIMEZONE) as one NDJSON file per reporting "
        "operator plus manifest.json (counts and SHA-256 digests) into OUT/DATE/, then, when TRACE_REPORT_URL is "
        "set, POST every file the receiver has not acknowledged yet and then the manifest. Idempotent: a second "
        "run over the same records writes the same bytes and pushes nothing; a run that failed half-way is "
        "resumed by running it again. Exit code 1 when the push is incomplete.",
    )
    report.add_argument("--date", required=True, help="the day to report, YYYY-MM-DD")
    report.add_argument("--out", help="folder of the reports (default TRACE_REPORT_DIR, reports)")
    report.add_argument("--no-push", action="store_true", help="only write the files, even if TRACE_REPORT_URL is set")
    report.add_argument("--push-attempts", type=int, default=3, choices=range(1, 11), metavar="N",
                        help="tries per file before giving up for this run (default 3)")  # fmt: skip
    report.add_argument("--database-url", help="overrides TRACE_DATABASE_URL")
    report.add_argument(
        "--data-dir", default=".trace-data", help="else the database of the `dev` on this folder (.trace-data)"
    )
    report.set_defaults(func=cmd_report)

    mig = sub.add_parser(
        "migrate",
        help="migrate the database and create the Kafka topics",
        description="Bring the database schema to the latest revision (Alembic) and create the topics.",
    )
    mig.add_argument("--no-topics", action="store_true", help="only migrate the database")
    service_options(mig)
    mig.set_defaults(func=cmd_migrate)

    schemas = sub.add_parser(
        "schemas",
        help="write the JSON Schemas of the event contract (or check them with --check)",
        description="Generate the JSON Schema (2020-12) of the event envelope and of every event type from the "
        "contract models, with the contract's default code formats. Writes only files that changed and removes "
        "stale *.schema.json files. With --check, writes nothing and exits 1 if any file differs, is missing "
        "or is extra.",
    )
    schemas.add_argument(
        "--out", default="schemas", help="folder to write to (default: schemas/ in the current directory)"
    )
    schemas.add_argument("--check", action="store_true", help="only compare; exit 1 and list the files that drifted")
    schemas.set_defaults(func=cmd_schemas)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
