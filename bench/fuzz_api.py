"""The long schemathesis run: every REST operation fuzzed against the OpenAPI document.

The same harness as the bounded run in ``make test`` (tests/security/api_fuzzing.py), with
more cases: ``--examples`` valid and as many invalid cases per operation, by every role in
turn and anonymously, path ids random or naming seeded rows, then ``--scenarios`` chains
along the document's links. Every response must be no 5xx, of a documented status,
content type and headers, with a body matching the documented schema.

It runs on a throwaway database it creates and drops (SQLite in a temporary folder, or a
new database on the PostgreSQL server of ``--postgres-url``), with real commits, prints
the number of requests, the failures and the count of each check, and writes
bench/results/fuzz-api.json (fuzz-api-postgresql.json). Exit status 1 when anything
failed.

    .venv/bin/python bench/fuzz_api.py --examples 25 --seed 1
    .venv/bin/python bench/fuzz_api.py --backend postgresql --postgres-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from schemathesis import __version__ as schemathesis_version  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from his import create_app  # noqa: E402
from his.config import Settings  # noqa: E402
from his.db import Database, make_engine  # noqa: E402
from tests import databases, factories  # noqa: E402
from tests.security.api_fuzzing import (  # noqa: E402
    Caller,
    Report,
    fuzz_links,
    fuzz_operations,
    load_schema,
    mint_token,
    seed,
)

RESULTS = REPO / "bench" / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=25, help="cases per operation and mode")
    parser.add_argument("--scenarios", type=int, default=50, help="stateful chains")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "HIS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="server to create the throwaway database on (--backend postgresql)",
    )
    parser.add_argument(
        "--output", type=Path, help="default: bench/results/fuzz-api[-postgresql].json"
    )
    args = parser.parse_args()

    if args.backend == "sqlite":
        url = databases.create_sqlite(Path(tempfile.mkdtemp(prefix="his-fuzz-")))
    else:
        url = databases.create_postgres(args.postgres_url)
    try:
        result = fuzz(url, args)
    finally:
        if args.backend == "postgresql":
            databases.drop_postgres(args.postgres_url, url)

    output = args.output or RESULTS / (
        "fuzz-api.json" if args.backend == "sqlite" else f"fuzz-api-{args.backend}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"operations:  {result['operations']}")
    print(f"requests:    {result['requests']} ({result['stateful_requests']} in link chains)")
    print(f"failures:    {result['failures']}")
    print(f"statuses:    {result['statuses']}")
    for name, counts in result["checks"].items():
        print(f"  {name:32} passed {counts['passed']:6}  failed {counts['failed']}")
    for note in result["notes"]:
        print(f"note:        {note}")
    for failure in result["failure_details"][:20]:
        print(f"\n{failure['operation']} [{failure['check']}] {failure.get('status')}")
        print(f"  {failure['problem'][:500]}")
        print(f"  {failure.get('request', '')[:300]}")
    print(f"\nwritten to {output.relative_to(REPO) if output.is_relative_to(REPO) else output}")
    return 1 if result["failures"] else 0


def fuzz(url: str, args: argparse.Namespace) -> dict:
    engine = make_engine(url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    session = sessions()
    factories.bind(session)
    site = seed(session)
    session.commit()
    settings = Settings.from_env(
        {"HIS_ENV": "test", "HIS_DATABASE_URL": url, "HIS_LOG_LEVEL": "WARNING"}
    )
    app = create_app(settings, database=Database(engine, sessions))
    tokens = {role: mint_token(session, uid) for role, uid in site.user_ids.items()}
    caller = Caller(tokens, lambda role: mint_token(session, site.user_ids[role]))
    schema = load_schema(app)
    report = Report()
    started = time.monotonic()
    fuzz_operations(schema, caller, site.ids, report, max_examples=args.examples, seed=args.seed)
    fuzz_links(schema, caller, site, report, steps=args.scenarios)
    seconds = time.monotonic() - started
    session.close()
    engine.dispose()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "backend": args.backend,
        "schemathesis": schemathesis_version,
        "examples_per_operation_and_mode": args.examples,
        "stateful_scenarios": args.scenarios,
        "seed": args.seed,
        "seconds": round(seconds, 1),
        "roles": dict(sorted(caller.roles_used.items())),
        **report.as_dict(),
    }


if __name__ == "__main__":
    sys.exit(main())
