"""Load test of the chat channel: simulated households completing assessments over HTTP.

Usage::

    python bench/chat_load.py [--households 16] [--rounds 10] [--db sqlite|postgresql|both]
                              [--think-ms 0] [--turns 2]

For each database, two servers run under gunicorn (2 sync workers, on 127.0.0.1
only, each on a fresh database) and take the load in turns, floor then app,
``--turns`` times each (the rounds split between the turns), so that a shared
machine getting slower or faster during the run weighs on both alike:

* the app (``webhook:app``): N threads, each a household, complete whole
  assessments through ``POST /api/v1/chat`` (buttons and typed answers, the
  real engine, store and outbox), a new person every round;
* the floor: a bare Flask + SQLAlchemy endpoint, defined below, that only
  updates one row per message, driven with the same number of messages at the
  same concurrency. It is what any database-backed endpoint costs on this
  machine, so ``ratio`` = app msg/s ÷ floor msg/s says what the bot itself adds.

Printed per server: messages, msg/s, p50/p99/max latency, non-2xx count, ratio
to floor, CPU per message of the workers and of the PostgreSQL server (both
steadier than msg/s when the machine is shared), peak RSS per worker; then each
goal with PASS or MISS:
≥ 0.6 × floor, p99 ≤ 50 ms, 0 errors, ≤ 150 MB per worker.

By default every household sends its next message as soon as the reply comes
(closed loop): 16 requests are always in flight on 2 workers, so latency is
mostly queueing (Little's law: mean ≈ 16 ÷ msg/s). ``--think-ms`` adds a
person's pause between messages instead.

PostgreSQL: ``TEST_DATABASE_URL`` or postgresql+psycopg://postgres@127.0.0.1:5432/test,
in a temporary schema dropped afterwards. Every loop is bounded (rounds, and
``--max-seconds`` per phase) and the servers are stopped at the end.

Exit code: 0 when every goal is met, 1 when one is missed, 2 when a server failed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import requests

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_RATIO: Final = 0.6
GOAL_P99_MS: Final = 50.0
GOAL_RSS_MB: Final = 150.0
DEFAULT_PG: Final = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HOST: Final = "127.0.0.1"  # never anything but loopback

#: One complete assessment, as a person does it: (what, value). "tap" picks the
#: first button whose label starts with the value; "{income}" varies per household.
SCRIPT: Final[tuple[tuple[str, str], ...]] = (
    ("event", "follow"),
    ("tap", "Chỉ xem thử"),
    ("say", "thuong phuoc 1"),
    ("tap", "Đúng"),
    ("say", "4"),
    ("tap", "Không có"),
    ("say", "0"),
    ("say", "{income}"),
    ("tap", "Không có"),
    ("tap", "Bán kiên cố"),
    ("say", "45"),
    ("tap", "Giếng khoan"),
    ("tap", "Tự hoại"),
    ("say", "1,4,6"),
    ("tap", "Được thu gom"),
    ("tap", "Đúng"),
)


# -- the floor: a bare Flask + SQLAlchemy app ------------------------------------


def create_floor_app() -> Any:
    """Return the floor app: ``POST /floor`` adds 1 to the caller's row, nothing else.

    Same database and connection settings as the bot (``FLOOR_DATABASE_URL``,
    engine from :func:`bot.store.db.make_engine`), JSON in and out, one
    transaction per request.
    """
    from flask import Flask, request
    from sqlalchemy import Column, Integer, MetaData, String, Table, insert, update

    from bot.store.db import make_engine

    engine = make_engine(os.environ["FLOOR_DATABASE_URL"])
    metadata = MetaData()
    counters = Table(
        "floor_counters",
        metadata,
        Column("user", String(128), primary_key=True),
        Column("n", Integer),
    )
    with contextlib.suppress(Exception):  # the other worker may be creating it right now
        metadata.create_all(engine)

    app = Flask("floor")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/floor")
    def floor() -> dict[str, Any]:
        user = str((request.get_json(silent=True) or {}).get("user", ""))[:128]
        with engine.begin() as connection:
            changed = connection.execute(
                update(counters).where(counters.c.user == user).values(n=counters.c.n + 1)
            ).rowcount
            if not changed:
                connection.execute(insert(counters).values(user=user, n=1))
        return {"messages": [], "done": False}

    return app


# -- running servers ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def worker_pids(master: int) -> list[int]:
    """Return the pids of the gunicorn master's child processes."""
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return [int(pid) for pid in children]
    except OSError:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                        found.append(int(entry.name))
        return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by process ``pid``."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def database_cpu() -> float:
    """CPU seconds used so far by the PostgreSQL server's processes on this machine (0 without one).

    It shares the 2 cores with the workers, so what each message costs it is part of the figure.
    A backend that exits between two readings is not counted; the pools keep theirs open.
    """
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    total += cpu_seconds(int(entry.name))
    return total


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Server:
    """A gunicorn server started by this script, with an RSS sampler on its workers."""

    process: subprocess.Popen[bytes]
    base: str
    peak_rss: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        while not self._stop.wait(0.2):
            for pid in worker_pids(self.process.pid):
                self.peak_rss[pid] = max(self.peak_rss.get(pid, 0.0), rss_mb(pid))

    def workers_cpu(self) -> float:
        """CPU seconds used so far by the workers (compare two readings)."""
        return sum(cpu_seconds(pid) for pid in worker_pids(self.process.pid))


@contextlib.contextmanager
def gunicorn(app_spec: str, env: dict[str, str], log: Path) -> Iterator[Server]:
    """Run ``gunicorn -w 2 app_spec`` on a free loopback port until the block ends."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "--workers",
        "2",
        "--bind",
        f"{HOST}:{port}",
        "--chdir",
        str(ROOT),
        "--timeout",
        "60",
        "--graceful-timeout",
        "5",
        app_spec,
    ]
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = Server(process, f"http://{HOST}:{port}")
    sampler = threading.Thread(target=server.sample, daemon=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(server.base + "/healthz", timeout=2).ok:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer in 60 s; see {log}")
            time.sleep(0.2)
        sampler.start()
        yield server
    finally:
        server._stop.set()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# -- load ------------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    non_2xx: int = 0
    failures: list[str] = field(default_factory=list)
    completed: int = 0
    elapsed: float = 0.0
    server_cpu: float = 0.0  # CPU seconds of the workers during the measured phase
    database_cpu: float = 0.0  # CPU seconds of the PostgreSQL server during the measured phase
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, seconds: float, ok: bool) -> None:
        with self.lock:
            self.latencies.append(seconds)
            if not ok:
                self.non_2xx += 1

    def fail(self, message: str) -> None:
        with self.lock:
            if len(self.failures) < 5:
                self.failures.append(message)


class Client:
    """A minimal JSON-over-HTTP client for one simulated person.

    Plain ``http.client`` rather than ``requests``: the load generator shares
    the 2 cores with the servers it measures, and ``requests`` spends about a
    millisecond of CPU per call, which would be taken from the servers.
    Gunicorn's sync workers close every connection, so there is nothing to reuse.
    """

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            connection.request(
                "POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def post(client: Client, path: str, body: dict[str, Any], stats: Stats) -> dict[str, Any] | None:
    start = time.perf_counter()
    try:
        status, data = client.post(path, body)
    except OSError as exc:
        stats.add(time.perf_counter() - start, False)
        stats.fail(f"{type(exc).__name__}: {exc}")
        return None
    ok = 200 <= status < 300
    stats.add(time.perf_counter() - start, ok)
    if not ok:
        stats.fail(f"HTTP {status}: {data[:200]!r}")
        return None
    return json.loads(data)  # type: ignore[no-any-return]


def household(
    base: str, rounds: int, stats: Stats, seed: int, deadline: float, think: float = 0.0
) -> None:
    """One simulated household: ``rounds`` complete assessments, a new person each time.

    ``think`` seconds (±50 %) pass between a reply and the next message, as a
    person reads and types; 0 sends at once (closed loop: the worst case).
    """
    rng = random.Random(seed)
    client = Client(base)
    url = "/api/v1/chat"
    for _ in range(rounds):
        user = f"bench-{uuid.uuid4().hex}"
        reply: dict[str, Any] | None = None
        for kind, value in SCRIPT:
            if time.monotonic() > deadline:
                return
            body: dict[str, Any] = {"user": user, "message_id": uuid.uuid4().hex}
            if kind == "event":
                body["event"] = value
            elif kind == "say":
                body["text"] = value.format(income=f"{rng.randint(3, 12)} triệu")
            else:
                buttons = [c for m in (reply or {}).get("messages", []) for c in m["choices"]]
                match = next((c for c in buttons if c["label"].startswith(value)), None)
                if match is None:
                    stats.fail(f"no button {value!r} in {[c['label'] for c in buttons]}")
                    break
                body["payload"] = match["payload"]
            reply = post(client, url, body, stats)
            if reply is None:
                break
            if think:
                time.sleep(think * rng.uniform(0.5, 1.5))
        else:
            if reply and reply.get("done") and "KẾT QUẢ SƠ BỘ" in reply["messages"][0]["text"]:
                with stats.lock:
                    stats.completed += 1
            else:
                stats.fail("conversation ended without a result")


def floor_client(
    base: str, messages: int, stats: Stats, seed: int, deadline: float, think: float = 0.0
) -> None:
    """Send ``messages`` requests to the floor endpoint, one at a time."""
    client = Client(base)
    rng = random.Random(seed)
    user = f"floor-{seed}"
    for i in range(messages):
        if time.monotonic() > deadline:
            return
        post(client, "/floor", {"user": user, "text": str(i)}, stats)
        if think:
            time.sleep(think * rng.uniform(0.5, 1.5))


def drive(threads: int, target: Callable[[int, float], None], max_seconds: float) -> float:
    deadline = time.monotonic() + max_seconds
    workers = [threading.Thread(target=target, args=(i, deadline)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=max_seconds + 30)
    return time.perf_counter() - start


def warm_up(base: str, path: str, body: Callable[[int], dict[str, Any]]) -> None:
    """A few requests first, so both workers have loaded everything (not measured)."""
    for i in range(8):
        with contextlib.suppress(requests.RequestException):
            requests.post(base + path, json=body(i), timeout=30)


# -- reporting ---------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


@dataclass
class Row:
    name: str
    stats: Stats
    peak_rss: dict[int, float]

    @property
    def rate(self) -> float:
        return len(self.stats.latencies) / self.stats.elapsed if self.stats.elapsed else 0.0

    @property
    def cpu_ms(self) -> float:
        """Server CPU per message: steadier than msg/s on a shared 2-core machine."""
        n = len(self.stats.latencies)
        return self.stats.server_cpu * 1000 / n if n else 0.0

    @property
    def db_cpu_ms(self) -> str:
        n = len(self.stats.latencies)
        return f"{self.stats.database_cpu * 1000 / n:.2f}" if n and self.stats.database_cpu else "-"

    def line(self, floor: float | None) -> str:
        lat = [x * 1000 for x in self.stats.latencies]
        ratio = f"{self.rate / floor:5.2f}" if floor else "    -"
        rss = ", ".join(f"{v:.0f}" for v in sorted(self.peak_rss.values())) or "-"
        return (
            f"{self.name:<22} {len(lat):>6} {self.rate:>8.1f} {percentile(lat, 50):>7.1f} "
            f"{percentile(lat, 99):>7.1f} {max(lat, default=0):>7.1f} {self.stats.non_2xx:>7} "
            f"{ratio:>6} {self.cpu_ms:>7.2f} {self.db_cpu_ms:>7}  {rss}"
        )


HEADER: Final = (
    f"{'server':<22} {'msgs':>6} {'msg/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
    f"{'non-2xx':>7} {'ratio':>6} {'cpu ms':>7} {'db cpu':>7}  peak RSS/worker MB"
)


def measure(
    server: Server, stats: Stats, load: Callable[[int, float], None], args: argparse.Namespace, *, postgresql: bool
) -> None:
    """Drive one phase of ``load`` (one thread per household) at ``server``; add its time and CPU to ``stats``."""
    cpu_before, db_before = server.workers_cpu(), database_cpu() if postgresql else 0.0
    stats.elapsed += drive(args.households, load, args.max_seconds)
    stats.server_cpu += server.workers_cpu() - cpu_before
    if postgresql:
        stats.database_cpu += database_cpu() - db_before


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` whole shares as equal as can be (the first ones larger)."""
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def run_database(kind: str, args: argparse.Namespace, workdir: Path) -> list[tuple[str, bool, str]]:
    """Run floor and app in turns on one database kind; print the table; return the goal checks.

    Both servers stay up for the whole run and take the load in turns (floor, app, floor, app, ...), so a
    shared machine that slows down or speeds up during the run weighs on both alike.
    """
    from bot.store.testing import temporary_database

    # "" makes temporary_database use a SQLite file in workdir.
    base_url = "" if kind == "sqlite" else os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG
    log = workdir / f"gunicorn-{kind}.log"
    messages_per_household = len(SCRIPT) * args.rounds
    think = args.think_ms / 1000
    env = {"SECRET_KEY": "bench-only", "TUSOAT_ENVIRONMENT": '"development"'}
    floor_stats, app_stats = Stats(), Stats()
    with (
        temporary_database(workdir, base_url) as app_url,
        temporary_database(workdir, base_url) as floor_url,
        gunicorn("bench.chat_load:create_floor_app()", {"FLOOR_DATABASE_URL": floor_url}, log) as floor_server,
        gunicorn("webhook:app", {**env, "DATABASE_URL": app_url}, log) as app_server,
    ):
        warm_up(floor_server.base, "/floor", lambda i: {"user": f"warm-{i}"})
        # Whole assessments, so every worker has loaded the parsers and the legal core.
        drive(4, lambda i, deadline: household(app_server.base, 1, Stats(), 100 + i, deadline), 60)
        turns = min(args.turns, args.rounds)
        for rounds in shares(args.rounds, turns):
            messages = len(SCRIPT) * rounds
            phases: list[tuple[Server, Stats, Callable[[int, float], None]]] = [
                (
                    floor_server,
                    floor_stats,
                    lambda i, deadline, n=messages: floor_client(floor_server.base, n, floor_stats, i, deadline, think),
                ),
                (
                    app_server,
                    app_stats,
                    lambda i, deadline, n=rounds: household(app_server.base, n, app_stats, i, deadline, think),
                ),
            ]
            for server, stats, load in phases:
                measure(server, stats, load, args, postgresql=kind == "postgresql")
        floor = Row(f"floor ({kind})", floor_stats, dict(floor_server.peak_rss))
        app = Row(f"chat app ({kind})", app_stats, dict(app_server.peak_rss))

    pacing = f"{args.think_ms:.0f} ms think time" if think else "no think time (closed loop)"
    print(
        f"\n== {kind}: {args.households} concurrent households × {args.rounds} assessments "
        f"({messages_per_household} messages each), {pacing}, gunicorn 2 sync workers, "
        f"in {turns} turns each"
    )
    print(HEADER)
    print(floor.line(None))
    print(app.line(floor.rate))
    print(f"assessments completed: {app_stats.completed} of {args.households * args.rounds}")
    for message in app_stats.failures + floor_stats.failures:
        print(f"  failure: {message}")

    lat = [x * 1000 for x in app_stats.latencies]
    ratio = app.rate / floor.rate if floor.rate else 0.0
    peak = max(app.peak_rss.values(), default=0.0)
    return [
        (f"{kind}: ratio to floor ≥ {GOAL_RATIO}", ratio >= GOAL_RATIO, f"{ratio:.2f}"),
        (
            f"{kind}: p99 ≤ {GOAL_P99_MS:.0f} ms",
            percentile(lat, 99) <= GOAL_P99_MS,
            f"{percentile(lat, 99):.1f} ms",
        ),
        (
            f"{kind}: 0 errors",
            app_stats.non_2xx == 0
            and not app_stats.failures
            and app_stats.completed == args.households * args.rounds,
            f"{app_stats.non_2xx} non-2xx, {len(app_stats.failures)} failures",
        ),
        (f"{kind}: ≤ {GOAL_RSS_MB:.0f} MB/worker", 0 < peak <= GOAL_RSS_MB, f"{peak:.0f} MB"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--households", type=int, default=16, help="concurrent households (16)")
    # 10 × 16 messages per household: long enough that the start (16 new people at once) is not the whole p99.
    parser.add_argument("--rounds", type=int, default=10, help="assessments per household (10)")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument(
        "--turns", type=int, default=2, help="phases of each server, taken in turns (2: floor, app, floor, app)"
    )
    parser.add_argument("--max-seconds", type=float, default=180.0, help="bound per phase (180)")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean pause between a reply and the next message (0: closed loop, the worst case)",
    )
    args = parser.parse_args(argv)
    if not (
        1 <= args.households <= 64 and 1 <= args.rounds <= 50 and 0 <= args.think_ms <= 10_000 and 1 <= args.turns <= 10
    ):
        parser.error("--households must be 1..64, --rounds 1..50, --think-ms 0..10000 and --turns 1..10")

    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    checks: list[tuple[str, bool, str]] = []
    with tempfile.TemporaryDirectory(prefix="chat-load-") as tmp:
        try:
            for kind in kinds:
                checks += run_database(kind, args, Path(tmp))
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            log = next(Path(tmp).glob("gunicorn-*.log"), None)
            if log is not None:
                print(log.read_text()[-3000:], file=sys.stderr)
            return 2
    print("\nGoals:")
    for name, ok, value in checks:
        print(f"  {'PASS' if ok else 'MISS'}  {name:<34} {value}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
