"""Load test of the push-channel webhook: signed Zalo OA events at a target rate, replies to a fake provider.

Usage::

    python bench/webhook_load.py [--rate 500] [--duration 10] [--users 1000] [--db postgresql|sqlite]
                                 [--workers 1] [--rq] [--max-wait 120]

Everything runs on 127.0.0.1 and stops by itself:

* the app (``webhook:app``) under gunicorn with 2 sync workers, ``WORKER_THREAD`` off;
* ``--workers`` delivery workers (``flask delivery-worker``; with ``--rq``: ``flask delivery-worker --rq``
  and webhooks enqueue RQ jobs on the local Redis), at a lower CPU priority (``--worker-nice``, default 10)
  because on this 2-core machine they compete with the web workers, and acknowledging within the provider's
  deadline matters more than replying a few seconds sooner (in production they run on other machines);
* a fake Zalo OA (Open API + OAuth, ``tests/fakes``) in its own process, recording every reply;
* the driver (this process): an **open loop** sending ``rate × duration`` events from ``--users`` simulated
  people, each event signed like Zalo signs it (``X-ZEvent-Signature``), the i-th at ``start + i / rate``
  whatever the previous ones did. Each person's messages go out in order, never two at once.

With ``--defer-workers`` the workers start only when the load ends, as if they ran on other machines: the
acknowledgements then measure the web tier alone and the replies are sent from the backlog.

Then, on the same database, the **floor**: a bare Flask endpoint under the same gunicorn that only inserts
the raw body as one row, driven with the same load. ``ratio`` = our ack p99 ÷ the floor's.

Printed: ack latency p50 / p99 / max (send → response), the same from the *scheduled* send time (what
the provider sees when the driver falls behind), events/s accepted (200), non-200 count, replies delivered per
second to the fake provider, and the delivery check: every accepted event recorded and processed exactly once
(``lost``), every reply row delivered exactly once and in order per person (``duplicated``, ``missing``,
``out of order``). Goals: ack p99 ≤ 100 ms at 500 events/s, 0 lost, 0 duplicated.

Exit code 0 when every goal is met, 1 when one is missed, 2 when a server failed to start.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import http.client
import json
import multiprocessing
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HOST: Final = "127.0.0.1"  # never anything but loopback
DEFAULT_PG: Final = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
GOAL_P99_MS: Final = 100.0
APP_ID: Final = "3608123456789012345"
OA_ID: Final = "579745863508352884"
OA_SECRET: Final = "bench-oa-secret"
TEXTS: Final = ("Xin chào", "4", "2", "1tr5", "có", "không", "3", "tiếp")


# -- the floor --------------------------------------------------------------------------------------------------


def floor_app() -> Any:
    """Bare Flask app: ``POST /ingest`` inserts the raw body as one row and answers 200 (gunicorn factory)."""
    from flask import Flask, request
    from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table, insert

    from bot.store.db import make_engine

    engine = make_engine(os.environ["DATABASE_URL"])
    metadata = MetaData()
    rows = Table("bench_floor", metadata, Column("id", Integer, primary_key=True), Column("body", LargeBinary))
    with contextlib.suppress(Exception):  # the other worker may be creating it now
        metadata.create_all(engine)
    app = Flask("floor")

    @app.post("/ingest")
    def ingest() -> dict[str, str]:
        with engine.begin() as connection:
            connection.execute(insert(rows).values(body=request.get_data()))
        return {"status": "ok"}

    return app


# -- the fake provider, in its own process ------------------------------------------------------------------------


def _serve_fake(port_pipe: Any, stop_event: Any) -> None:
    """Run a fake Zalo OA with a ``GET /_stats`` route until ``stop_event`` is set."""
    from tests.fakes.server import Recorded, Reply
    from tests.fakes.zalo_oa import FakeZaloOA

    class BenchFake(FakeZaloOA):
        def __init__(self) -> None:
            super().__init__(access_token="bench-at", refresh_token="bench-rt")
            self.first: float | None = None
            self.last: float | None = None
            self.route("GET", r"/_stats", "stats", self._stats)

        def _send(self, req: Recorded) -> Reply:
            reply = super()._send(req)
            now = time.time()
            self.first = self.first or now
            self.last = now
            return reply

        def _stats(self, req: Recorded) -> Reply:
            with self._lock:
                sent = [(b["recipient"]["user_id"], b["message"]["text"]) for _t, b in self.sent]
            return Reply(200, {"sent": sent, "first": self.first, "last": self.last})

    fake = BenchFake().start()
    port_pipe.send(fake.url)
    stop_event.wait()
    fake.stop()


@contextlib.contextmanager
def fake_provider() -> Iterator[str]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    stop = context.Event()
    process = context.Process(target=_serve_fake, args=(child, stop), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("fake provider did not start")
        yield str(parent.recv())
    finally:
        stop.set()
        process.join(10)
        if process.is_alive():
            process.kill()


def fake_stats(url: str) -> dict[str, Any]:
    import requests

    return requests.get(f"{url}/_stats", timeout=30).json()  # type: ignore[no-any-return]


# -- servers ------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            connection = http.client.HTTPConnection(HOST, port, timeout=2)
            connection.request("GET", path)
            connection.getresponse().read()
            return
        time.sleep(0.2)
    raise RuntimeError(f"server on {port} did not answer")


@contextlib.contextmanager
def process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in its own process group; SIGTERM (then SIGKILL) the group at the end."""
    with log.open("ab") as handle:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def gunicorn_command(spec: str, port: int) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"{HOST}:{port}", "--backlog", "2048",
            "--log-level", "warning", spec]  # fmt: skip


# -- the driver ---------------------------------------------------------------------------------------------------


def zalo_body(user: str, msg_id: str, text: str) -> bytes:
    """A ``user_send_text`` event, with the current time as Zalo sends it (epoch ms, as a string)."""
    body = {
        "app_id": APP_ID,
        "user_id_by_app": user,
        "event_name": "user_send_text",
        "sender": {"id": user},
        "recipient": {"id": OA_ID},
        "message": {"msg_id": msg_id, "text": text},
        "timestamp": str(int(time.time() * 1000)),
    }
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def sign(raw: bytes) -> str:
    timestamp = json.loads(raw)["timestamp"]
    return "mac=" + hashlib.sha256(APP_ID.encode() + raw + timestamp.encode() + OA_SECRET.encode()).hexdigest()


@dataclass
class DriveResult:
    """What the driver measured."""

    sent: int = 0
    ok: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    latency_ms: list[float] = field(default_factory=list)
    scheduled_ms: list[float] = field(default_factory=list)
    accepted_ids: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def drive(port: int, path: str, *, rate: float, duration: float, users: int, threads: int, zalo: bool) -> DriveResult:
    """Open-loop load: event i is due at ``start + i / rate``; a person's events never overlap."""
    total = int(rate * duration)
    run = uuid.uuid4().hex[:8]
    plan = [(f"9{run_hash(run)}{i % users:07d}", f"{run}-{i}", TEXTS[(i // users) % len(TEXTS)]) for i in range(total)]
    work: queue.Queue[tuple[int, str, str, str] | None] = queue.Queue()
    busy_users: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)
    result = DriveResult()
    lock = threading.Lock()

    def sender() -> None:
        connection: http.client.HTTPConnection | None = None
        while (item := work.get()) is not None:
            index, user, msg_id, text = item
            due = start + index / rate
            with busy_users[user]:  # in order per person, one at a time
                raw = zalo_body(user, msg_id, text)
                headers = {"Content-Type": "application/json", "X-ZEvent-Signature": sign(raw)} if zalo else {}
                began = time.perf_counter()
                status = 0
                for _attempt in range(2):
                    try:
                        if connection is None:
                            connection = http.client.HTTPConnection(HOST, port, timeout=10)
                        connection.request("POST", path, body=raw, headers=headers)
                        response = connection.getresponse()
                        response.read()
                        status = response.status
                        if response.getheader("Connection", "").lower() == "close":
                            connection.close()
                            connection = None
                        break
                    except (OSError, http.client.HTTPException) as exc:
                        if connection is not None:
                            connection.close()
                        connection = None
                        status = -1
                        error = type(exc).__name__
                ended = time.perf_counter()
            with lock:
                result.sent += 1
                result.latency_ms.append((ended - began) * 1000)
                result.scheduled_ms.append(max(0.0, ended - due) * 1000)
                if status == 200:
                    result.ok += 1
                    result.accepted_ids.append((user, msg_id))
                else:
                    result.errors[str(status) if status != -1 else error] += 1

    workers = [threading.Thread(target=sender, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start = time.perf_counter() + 0.2
    for index, (user, msg_id, text) in enumerate(plan):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        work.put((index, user, msg_id, text))
    for _ in workers:
        work.put(None)
    for worker in workers:
        worker.join(120)
    result.seconds = time.perf_counter() - start
    return result


def run_hash(run: str) -> str:
    return str(int(hashlib.sha256(run.encode()).hexdigest()[:6], 16) % 1000).zfill(3)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- checking the deliveries ------------------------------------------------------------------------------------


def check(url: str, accepted: list[tuple[str, str]], fake_url: str, max_wait: float) -> dict[str, Any]:
    """Wait for the workers to finish, then compare what was accepted, processed, queued and delivered."""
    from sqlalchemy import select

    from bot.channels import StaticTokenStore, ZaloOAAdapter
    from bot.store.db import Store
    from bot.store.models import (
        Identity,
        InboundMessage,
        OutboundMessage,
        OutboundStatus,
    )

    store = Store.from_url(url)
    deadline = time.monotonic() + max_wait
    while True:
        with store.sessions() as session:
            pending_in = session.execute(
                select(InboundMessage.id).where(InboundMessage.processed_at.is_(None)).limit(1)
            ).first()
            pending_out = session.execute(
                select(OutboundMessage.id).where(OutboundMessage.status == OutboundStatus.PENDING).limit(1)
            ).first()
        if (pending_in is None and pending_out is None) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    adapter = ZaloOAAdapter(app_id=APP_ID, oa_secret_key=OA_SECRET, tokens=StaticTokenStore("x"))
    with store.sessions() as session:
        address = dict(session.execute(select(Identity.id, Identity.address)).all())
        recorded = session.execute(
            select(InboundMessage.identity_id, InboundMessage.message_id, InboundMessage.processed_at)
        ).all()
        replies = session.execute(
            select(OutboundMessage.identity_id, OutboundMessage.seq, OutboundMessage.status, OutboundMessage.payload)
            .order_by(OutboundMessage.identity_id, OutboundMessage.seq)
        ).all()
    store.engine.dispose()
    recorded_ids = collections.Counter((address.get(i), m) for i, m, _p in recorded)
    processed = {(address.get(i), m) for i, m, p in recorded if p is not None}
    lost = sum(1 for key in accepted if key not in processed)
    duplicated_inbound = sum(c - 1 for c in recorded_ids.values() if c > 1)
    expected: dict[str, list[str]] = collections.defaultdict(list)
    for identity_id, _seq, status, payload in replies:
        if status is OutboundStatus.SENT and payload:
            expected[address[identity_id]].extend(part["text"] for part in adapter.render(payload))
    stats = fake_stats(fake_url)
    got: dict[str, list[str]] = collections.defaultdict(list)
    for user, text in stats["sent"]:
        got[user].append(text)
    duplicated = missing = out_of_order = 0
    for user in set(expected) | set(got):
        want, have = expected.get(user, []), got.get(user, [])
        want_count, have_count = collections.Counter(want), collections.Counter(have)
        duplicated += sum(max(0, have_count[t] - want_count[t]) for t in have_count)
        missing += sum(max(0, want_count[t] - have_count[t]) for t in want_count)
        if want != have and not duplicated and not missing:
            out_of_order += 1
    span = (stats["last"] or 0) - (stats["first"] or 0)
    return {
        "replies_rows": len(replies),
        "replies_sent_rows": sum(1 for r in replies if r.status is OutboundStatus.SENT),
        "replies_failed_rows": sum(1 for r in replies if r.status is OutboundStatus.FAILED),
        "replies_pending_rows": sum(1 for r in replies if r.status is OutboundStatus.PENDING),
        "delivered": len(stats["sent"]),
        "delivered_per_s": len(stats["sent"]) / span if span > 0 else float("nan"),
        "lost": lost,
        "duplicated_inbound": duplicated_inbound,
        "duplicated": duplicated,
        "missing": missing,
        "out_of_order_people": out_of_order,
    }


# -- main ---------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    from bot.store.testing import temporary_database

    base = (os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG) if kind == "postgresql" else "sqlite:///"
    with temporary_database(workdir, base) as url:
        yield url


def summarize(name: str, result: DriveResult) -> dict[str, Any]:
    return {
        "server": name,
        "events": result.sent,
        "accepted": result.ok,
        "non_200": dict(result.errors),
        "accepted_per_s": result.ok / result.seconds if result.seconds else float("nan"),
        "ack_p50_ms": percentile(result.latency_ms, 50),
        "ack_p99_ms": percentile(result.latency_ms, 99),
        "ack_max_ms": max(result.latency_ms, default=float("nan")),
        "from_schedule_p99_ms": percentile(result.scheduled_ms, 99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="events per second (default 500)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load (default 10)")
    parser.add_argument("--users", type=int, default=1000, help="simulated people (default 1000)")
    parser.add_argument("--threads", type=int, default=48, help="driver connections (default 48)")
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--workers", type=int, default=1, help="delivery worker processes (default 1)")
    parser.add_argument("--rq", action="store_true", help="scale-out mode: RQ jobs on the local Redis")
    parser.add_argument("--worker-nice", type=int, default=10,
                        help="CPU niceness of the delivery workers sharing this machine with the web workers "
                        "(default 10: acknowledging webhooks comes first; 0 = same priority)")  # fmt: skip
    parser.add_argument("--defer-workers", action="store_true",
                        help="start the delivery workers when the load ends (as if they ran on other machines: "
                        "the acknowledgements then measure the web tier alone; replies are sent from the backlog)")  # fmt: skip
    parser.add_argument("--max-wait", type=float, default=120.0, help="longest wait for the replies, seconds")
    parser.add_argument("--skip-floor", action="store_true")
    args = parser.parse_args(argv)
    rate, duration = min(args.rate, 5000.0), min(args.duration, 120.0)  # bounded

    with tempfile.TemporaryDirectory(prefix="webhook-load-") as tmp, fake_provider() as fake_url:
        workdir = Path(tmp)
        with database(args.db, workdir) as url:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("TUSOAT_", "ZALO_", "TELEGRAM_"))}
            env.update(
                DATABASE_URL=url,
                SECRET_KEY="bench-secret",
                PYTHONPATH=str(ROOT),
                TUSOAT_WORKER_THREAD="false",
                ZALO_OA_APP_ID=APP_ID,
                ZALO_OA_SECRET_KEY=OA_SECRET,
                ZALO_OA_ACCESS_TOKEN="bench-at",
                ZALO_OA_API_BASE=fake_url,
                ZALO_OA_OAUTH_BASE=fake_url,
            )
            if args.rq:
                env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
                env["TUSOAT_DELIVERY_QUEUE_PREFIX"] = f"bench-{uuid.uuid4().hex[:8]}"
            from bot import create_app

            os.environ.setdefault("SECRET_KEY", "bench-secret")
            create_app({"DATABASE_URL": url, "WORKER_THREAD": False})  # migrate once, before the servers race
            port = free_port()
            worker_command = [sys.executable, "-m", "flask", "--app", "webhook", "delivery-worker"]
            if args.worker_nice:
                worker_command = ["nice", "-n", str(args.worker_nice), *worker_command]
            if args.rq:
                worker_command.append("--rq")
            with contextlib.ExitStack() as stack:
                stack.enter_context(process(gunicorn_command("webhook:app", port), env, workdir / "app.log"))

                def start_workers() -> None:
                    for i in range(args.workers):
                        stack.enter_context(process(worker_command, env, workdir / f"worker{i}.log"))

                if not args.defer_workers:
                    start_workers()
                try:
                    wait_http(port, "/healthz")
                except RuntimeError:
                    print((workdir / "app.log").read_text()[-3000:], file=sys.stderr)
                    return 2
                print(f"app: {rate:.0f} events/s for {duration:.0f} s from {args.users} people "
                      f"({args.db}, {args.workers} worker(s) at nice {args.worker_nice}"
                      f"{' started after the load' if args.defer_workers else ''}"
                      f"{', RQ' if args.rq else ''})", flush=True)  # fmt: skip
                app_result = drive(port, "/channels/zalo_oa", rate=rate, duration=duration, users=args.users,
                                   threads=args.threads, zalo=True)  # fmt: skip
                if args.defer_workers:
                    start_workers()
                delivery = check(url, app_result.accepted_ids, fake_url, args.max_wait)
            if args.rq:
                import redis

                client = redis.Redis.from_url(env["REDIS_URL"])
                for key in client.scan_iter(f"*{env['TUSOAT_DELIVERY_QUEUE_PREFIX']}*"):
                    client.delete(key)
                client.close()
            floor_result = None
            if not args.skip_floor:
                floor_port = free_port()
                with process(gunicorn_command("bench.webhook_load:floor_app()", floor_port), env,
                             workdir / "floor.log"):  # fmt: skip
                    wait_http(floor_port, "/nothing")
                    print("floor: same load on a bare insert-one-row endpoint", flush=True)
                    floor_result = drive(floor_port, "/ingest", rate=rate, duration=duration, users=args.users,
                                         threads=args.threads, zalo=False)  # fmt: skip
    app_summary = summarize("app", app_result)
    report: dict[str, Any] = {"app": app_summary, "delivery": delivery}
    if floor_result is not None:
        floor_summary = summarize("floor", floor_result)
        report["floor"] = floor_summary
        report["ack_p99_ratio_to_floor"] = app_summary["ack_p99_ms"] / floor_summary["ack_p99_ms"]
        report["ack_p50_ratio_to_floor"] = app_summary["ack_p50_ms"] / floor_summary["ack_p50_ms"]
    print(json.dumps(report, indent=2, ensure_ascii=False))
    goals = {
        f"ack p99 ≤ {GOAL_P99_MS:.0f} ms": app_summary["ack_p99_ms"] <= GOAL_P99_MS,
        f"accepted ≥ 99% of {rate:.0f}/s": app_summary["accepted_per_s"] >= 0.99 * rate,
        "0 lost": delivery["lost"] == 0,
        "0 duplicated": delivery["duplicated"] == 0 and delivery["duplicated_inbound"] == 0,
        "every reply delivered, in order": delivery["missing"] == 0 and delivery["out_of_order_people"] == 0
        and delivery["replies_pending_rows"] == 0,
    }
    for name, met in goals.items():
        print(f"{'PASS' if met else 'MISS'}  {name}")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
