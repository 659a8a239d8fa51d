"""Leaderboard under bounded load on 127.0.0.1: podium's board against the naive way, same run.

    .venv/bin/python benchmarks/board_load.py [--teams 300] [--per-team 30] [--seconds 8]
    .venv/bin/python benchmarks/board_load.py --db postgresql [--processes 4]

Seeds a real SQLite database with TEAMS x PER_TEAM scored submissions on the digits competition,
then runs the app under waitress in a separate process twice:
- podium: the board ranked in SQL (window functions), cached per board version;
- naive: every submission loaded as an ORM object, ranked in Python and rendered on each request
  (and, on each upload, the whole board recomputed the same way, as a naive app refreshing its
  board after a new score).
Against each it measures (a) GET / with CONCURRENCY keep-alive clients for at most SECONDS
(requests/s, p50, p99), and (b) CSV upload + score through POST /api/submissions.

With ``--db postgresql`` the same run compares, instead of podium against the naive way, podium in
one process on SQLite (waitress, the default deployment) against ``podium serve --processes N``
(gunicorn, N worker processes) on a throwaway PostgreSQL cluster that the benchmark starts itself
(tests/pg.py's cluster, from the Debian ``postgresql`` package's binaries) and stops at the end.
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the server process -------------------------------------------------------------------------

def serve(args) -> None:
    import logging

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" under load is expected
    from waitress import serve as waitress_serve

    from leaderboard import create_app

    app = create_app({"COMPETITION_DIR": args.competition, "INSTANCE_PATH": args.instance, "WORKER_TOKEN": "w"})
    if args.mode == "naive":
        import leaderboard.api
        import leaderboard.board
        import leaderboard.intake
        from leaderboard.ranking import is_revealed
        from tests.reference_impls import naive_board

        import leaderboard.honest_board as hb

        # A fresh "version" each time: nothing cached, the board is loaded, ranked and rendered per request.
        # The naive peer ranks only (no tiers, ranges or forecast): the same peer as before they existed.
        def naive_honest():
            board = naive_board(is_revealed())
            return str(time.perf_counter_ns()), hb.HonestBoard(board=board, protection=hb.current_protection())

        leaderboard.board.versioned_honest_board = naive_honest
        leaderboard.api.versioned_honest_board = naive_honest
        real_accept = leaderboard.intake.accept

        def accept_then_rebuild(team, upload):
            submission = real_accept(team, upload)
            naive_board(False)
            return submission

        leaderboard.intake.accept = accept_then_rebuild  # what intake.submit calls
    waitress_serve(app, host="127.0.0.1", port=args.port, threads=args.threads, ident="podium", _quiet=True)


# --- seeding ------------------------------------------------------------------------------------

def seed(competition_dir: Path, instance: Path, teams: int, per_team: int, db_url: str | None = None) -> list[str]:
    """TEAMS teams with PER_TEAM scored submissions each (spread over past days); upload tokens."""
    import sqlalchemy as sa
    from tqdm import tqdm

    from harness.competition import load_solution, load_competition
    from harness.scoring import score_predictions
    from leaderboard import create_app
    from leaderboard.services import create_team
    from leaderboard.extensions import db
    from leaderboard.models import Submission, Team

    app = create_app({"COMPETITION_DIR": str(competition_dir), "INSTANCE_PATH": str(instance),
                      **({"SQLALCHEMY_DATABASE_URI": db_url} if db_url else {})})
    competition = load_competition(competition_dir)
    solution = load_solution(competition)
    truth = np.where(solution.labels < 0, 0, solution.labels)
    result = score_predictions(truth, solution, competition).to_dict()  # a realistic result_json
    rng = np.random.default_rng(0)
    # One real predictions CSV per team (a team of varied skill), stored where the submissions' rows
    # point, so the honest board's tiers, ranges and forecast are computed from real row-level data.
    storage = instance / "submissions" / "seed"
    storage.mkdir(parents=True, exist_ok=True)
    for i in range(teams):
        wrong = rng.random(len(truth)) > rng.uniform(0.5, 0.99)
        pred = np.where(wrong, (truth + rng.integers(1, 10, len(truth))) % 10, truth)
        (storage / f"team-{i}.csv").write_text(
            "id,label\n" + "".join(f"{id_},{int(p)}\n" for id_, p in zip(solution.ids, pred)))
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    with app.app_context():
        team_rows = [{"name": f"team {i:03d}", "slug": f"team-{i:03d}", "token_hash": "!", "created_at": start}
                     for i in range(teams)]
        db.session.execute(sa.insert(Team), team_rows)
        ids = list(db.session.scalars(sa.select(Team.id).order_by(Team.id)))
        rows = []
        for team_id in tqdm(ids, desc="seeding submissions", unit="team"):
            for k in range(per_team):
                pub = float(rng.uniform(0.5, 0.99))
                rows.append({
                    "team_id": team_id, "kind": "csv", "original_name": "sub.csv", "sha256": uuid.uuid4().hex * 2,
                    "stored_path": f"seed/team-{team_id - ids[0]}.csv", "note": "", "status": "scored", "messages": [],
                    "created_at": start + dt.timedelta(hours=k * 7 + team_id % 7), "late": False,
                    "public_score": pub, "private_score": float(np.clip(pub + rng.normal(0, 0.02), 0, 1)),
                    "public_ci_low": pub - 0.03, "public_ci_high": min(1.0, pub + 0.03), "result_json": result,
                    "selected": False, "counts_toward_limit": True,
                })
        db.session.execute(sa.insert(Submission), rows)
        db.session.commit()
        tokens = [create_team(f"uploader {i}")[1] for i in range(4)]
        db.engine.dispose()
    return tokens


# --- the load -----------------------------------------------------------------------------------

def run_load(port: int, make_request, concurrency: int, seconds: float, max_requests: int) -> dict:
    """``make_request(conn)`` -> status, repeated by CONCURRENCY keep-alive clients; latencies in s."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    counter = iter(range(max_requests))

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        while time.perf_counter() < stop_at:
            with lock:
                if next(counter, None) is None:
                    break
            t0 = time.perf_counter()
            status = make_request(conn, i)
            mine.append(time.perf_counter() - t0)
            if status >= 300:
                errors.append(str(status))
        conn.close()
        with lock:
            latencies.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {
        "requests": len(lat), "errors": len(errors), "seconds": wall, "rps": len(lat) / wall,
        "p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
    }


def get_board(conn, _i) -> int:
    conn.request("GET", "/")
    response = conn.getresponse()
    body = response.read()
    assert b"team " in body
    return response.status


def upload_request(tokens: list[str], body: bytes):
    boundary = "podiumbenchboundary"
    payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"sub.csv\"\r\n"
               f"Content-Type: text/csv\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()

    def post(conn, i) -> int:
        conn.request("POST", "/api/submissions", body=payload, headers={
            "Authorization": f"Bearer {tokens[i % len(tokens)]}",
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 201:
            print("upload failed:", response.status, data[:200], file=sys.stderr)
        return response.status

    return post


def wait_up(port: int, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        # the naive board takes seconds per request on a loaded machine: wait for it, not 5 s
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("GET", "/api/leaderboard")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)  # also after an error answer: no busy loop
    raise RuntimeError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd")
    s = sub.add_parser("serve")
    s.add_argument("--mode", choices=("podium", "naive"), required=True)
    s.add_argument("--competition", required=True)
    s.add_argument("--instance", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--threads", type=int, default=4)
    parser.add_argument("--teams", type=int, default=300)
    parser.add_argument("--per-team", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="waitress threads (per process under gunicorn)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite",
                        help="postgresql: SQLite in one process against PostgreSQL with --processes, same run")
    parser.add_argument("--processes", type=int, default=4, help="gunicorn processes on PostgreSQL")
    args = parser.parse_args()
    if args.cmd == "serve":
        serve(args)
        return

    from harness.build import build_competition
    from harness.competition import load_solution

    work = Path(tempfile.mkdtemp(prefix="podium-board-load-"))
    try:
        competition = build_competition("digits", work, name="digits", decoys=40, seed=7)
        toml = competition.root / "competition.toml"
        toml.write_text(toml.read_text().replace("daily_limit = 5", "daily_limit = 1000000"))
        solution = load_solution(competition)
        truth = np.where(solution.labels < 0, 0, solution.labels)
        csv_body = ("id,label\n" + "".join(f"{i},{int(p)}\n" for i, p in zip(solution.ids, truth))).encode()
        if args.db == "postgresql":
            postgres_run(args, work, competition.root, csv_body)
            return
        results = {}
        for mode in ("podium", "naive"):
            instance = work / f"instance-{mode}"
            tokens = seed(competition.root, instance, args.teams, args.per_team)
            port = free_port()
            server = subprocess.Popen([sys.executable, __file__, "serve", "--mode", mode, "--competition",
                                       str(competition.root), "--instance", str(instance), "--port", str(port),
                                       "--threads", str(args.threads)])
            try:
                wait_up(port)
                run_load(port, get_board, 1, 1.0, 20)  # warm up
                if mode == "podium":
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    conn.request("GET", "/api/leaderboard")
                    rows = json.loads(conn.getresponse().read())["rows"]
                    conn.close()
                    on = sum(r.get("tier") is not None and r.get("rank_range") is not None for r in rows)
                    print(f"podium: tiers, rank ranges and forecast on {on} of {len(rows)} board rows", flush=True)
                    assert on == len(rows), "the honest board is not on"
                board = run_load(port, get_board, args.concurrency, args.seconds, 20000)
                uploads = run_load(port, upload_request(tokens, csv_body), args.concurrency, args.seconds, 2000)
                if mode == "podium":  # the uploads bumped the board version: the next page recomputes, once
                    fresh = run_load(port, get_board, 1, 60.0, 1)
                    again = run_load(port, get_board, 1, 60.0, 1)
                    print(f"podium: first board page after a score change (tiers, ranges and forecast computed) "
                          f"{fresh['p50_ms']:.0f} ms; the next one {again['p50_ms']:.1f} ms", flush=True)
            finally:
                server.terminate()
                server.wait(timeout=30)
            results[mode] = {"board": board, "upload": uploads}
            print(f"{mode:>6}: board {board['rps']:7.1f} req/s  p50 {board['p50_ms']:6.1f} ms  "
                  f"p99 {board['p99_ms']:6.1f} ms  ({board['requests']} requests, {board['errors']} errors) | "
                  f"upload+score {uploads['rps']:6.1f}/s  p99 {uploads['p99_ms']:6.1f} ms "
                  f"({uploads['requests']} uploads, {uploads['errors']} errors)", flush=True)
        p, n = results["podium"], results["naive"]
        print(f"\n{args.teams} teams x {args.per_team} submissions = {args.teams * args.per_team} in SQLite; "
              f"waitress {args.threads} threads, {args.concurrency} keep-alive clients, {os.cpu_count()} CPUs")
        print(f"board page:   podium {p['board']['rps']:.1f} req/s (p99 {p['board']['p99_ms']:.1f} ms) vs naive "
              f"{n['board']['rps']:.1f} req/s (p99 {n['board']['p99_ms']:.1f} ms): "
              f"{p['board']['rps'] / n['board']['rps']:.1f}x")
        print(f"upload+score: podium {p['upload']['rps']:.1f}/s vs naive {n['upload']['rps']:.1f}/s: "
              f"{p['upload']['rps'] / n['upload']['rps']:.1f}x")
        print(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args, port: int, tokens: list[str], csv_body: bytes, access_log: Path | None = None) -> dict:
    """The board over three windows (the median window's throughput is reported, every window's
    throughput and p99 are kept, and the worst window's p99 too), after a warm-up; then the uploads.

    Each process caches the honest board per board version, and the first request a process serves
    computes it (about half a second here): a warm-up on one connection would warm one gunicorn
    process and leave the others to pay inside the measured window. Under gunicorn the warm-up
    therefore runs until every worker process has answered (its pid in the access log, ``<1234>``),
    at most 60 s; each window opens new connections, so which process serves which is the kernel's
    choice, as for real clients."""
    wait_up(port)
    deadline = time.perf_counter() + 60
    while True:
        run_load(port, get_board, 4 * max(args.concurrency, args.processes), 2.0, 20000)
        if access_log is None:
            break
        pids = set(re.findall(r"<(\d+)>", access_log.read_text(errors="replace"))) if access_log.exists() else set()
        if len(pids) >= args.processes or time.perf_counter() > deadline:
            print(f"warm-up: {len(pids)} of {args.processes} gunicorn processes answered", flush=True)
            break
    windows = [run_load(port, get_board, args.concurrency, args.seconds, 20000) for _ in range(3)]
    board = dict(sorted(windows, key=lambda w: w["rps"])[1])
    board["windows_rps"] = [round(w["rps"], 1) for w in windows]
    board["windows_p99_ms"] = [round(w["p99_ms"], 1) for w in windows]
    board["worst_p99_ms"] = max(w["p99_ms"] for w in windows)
    uploads = run_load(port, upload_request(tokens, csv_body), args.concurrency, args.seconds, 2000)
    return {"board": board, "upload": uploads}


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()  # SIGTERM: waitress stops, gunicorn's master stops its workers gracefully
    try:
        server.wait(timeout=40)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


def postgres_run(args, work: Path, competition_root: Path, csv_body: bytes) -> None:
    """SQLite in one process (waitress) against PostgreSQL with ``--processes`` (gunicorn), same run."""
    from tests.pg import MISSING, postgres_bin, start_cluster, stop_cluster

    if postgres_bin() is None:
        raise SystemExit(MISSING)
    load_before = os.getloadavg()
    cluster = start_cluster()
    results = {}
    try:
        for label in ("sqlite", "postgresql"):
            instance = work / f"instance-{label}"
            db_url = cluster.create_database() if label == "postgresql" else None
            tokens = seed(competition_root, instance, args.teams, args.per_team, db_url)
            port = free_port()
            if label == "sqlite":
                argv = [sys.executable, __file__, "serve", "--mode", "podium", "--competition", str(competition_root),
                        "--instance", str(instance), "--port", str(port), "--threads", str(args.threads)]
            else:
                access_log = work / "access.log"
                argv = [sys.executable, "-m", "podium_cli", "serve", "--competition", str(competition_root),
                        "--instance", str(instance), "--db", db_url, "--port", str(port),
                        "--processes", str(args.processes), "--threads", str(args.threads), "--worker-token", "w",
                        "--access-log", str(access_log)]
            server = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)})
            try:
                results[label] = measure(args, port, tokens, csv_body,
                                         access_log if label == "postgresql" else None)
            finally:
                stop_server(server)
            b, u = results[label]["board"], results[label]["upload"]
            print(f"{label:>10}: board {b['rps']:7.1f} req/s  p50 {b['p50_ms']:6.1f} ms  p99 {b['p99_ms']:6.1f} ms  "
                  f"({b['requests']} requests, {b['errors']} errors) | upload+score {u['rps']:6.1f}/s  "
                  f"p99 {u['p99_ms']:6.1f} ms ({u['requests']} uploads, {u['errors']} errors)", flush=True)
    finally:
        stop_cluster(cluster)
    s, p = results["sqlite"], results["postgresql"]
    print(f"\n{args.teams} teams x {args.per_team} submissions = {args.teams * args.per_team}; "
          f"{args.concurrency} keep-alive clients, {os.cpu_count()} CPUs; load average before "
          f"{load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    print(f"board page:   PostgreSQL, {args.processes} gunicorn processes x {args.threads} threads: "
          f"{p['board']['rps']:.1f} req/s (p99 {p['board']['p99_ms']:.1f} ms) vs SQLite, 1 waitress process x "
          f"{args.threads} threads: {s['board']['rps']:.1f} req/s (p99 {s['board']['p99_ms']:.1f} ms): "
          f"{p['board']['rps'] / s['board']['rps']:.2f}x (median of three {args.seconds:g} s windows each; "
          f"windows {p['board']['windows_rps']} vs {s['board']['windows_rps']} req/s; worst window's p99 "
          f"{p['board']['worst_p99_ms']:.1f} vs {s['board']['worst_p99_ms']:.1f} ms)")
    print(f"upload+score: PostgreSQL {p['upload']['rps']:.1f}/s (p99 {p['upload']['p99_ms']:.1f} ms) vs SQLite "
          f"{s['upload']['rps']:.1f}/s (p99 {s['upload']['p99_ms']:.1f} ms)")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
