"""``podium demo``: a living leaderboard from nothing, in a few minutes, offline.

1. builds the digits competition (``harness.build``) under ``<root>/competitions/digits``;
2. trains the demo baseline (``podium baseline --preset demo``) and a weaker two-epoch model, as
   subprocesses, into ``<root>/runs/baseline`` and ``<root>/runs/weak``;
3. serves the board with waitress on 127.0.0.1 and starts a real ``podium worker`` process;
4. creates a few teams and submits over HTTP, as teams do: the baseline's predictions.csv (with
   its training history), the baseline's model.safetensors (scored by the worker) and the weaker
   model's CSV, and the sample submission;
5. prints the address and the tokens, and serves until Ctrl-C.

A second run reuses everything that exists (competition, runs, database, tokens in
``<root>/demo.json``) and submits nothing twice.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import requests

from harness.errors import PodiumError

DEMO_RUN_INPUTS = ("model.safetensors", "history.csv", "predictions.csv", "report.json")  # of a baseline run, what the demo uses
SCORING_WAIT_S = 600


@dataclass(frozen=True)
class DemoTeam:
    name: str
    uploads: tuple[tuple[str, str | None, str], ...]  # (file, history file or None, note)


@dataclass(frozen=True)
class DemoLayout:
    root: Path

    @property
    def competition(self) -> Path:
        return self.root / "competitions" / "digits"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def instance(self) -> Path:
        return self.root / "instance"

    @property
    def secrets_file(self) -> Path:
        return self.root / "demo.json"

    @property
    def worker_log(self) -> Path:
        return self.root / "worker.log"


def demo_teams(layout: DemoLayout) -> list[DemoTeam]:
    baseline, weak = layout.runs / "baseline", layout.runs / "weak"
    return [
        DemoTeam(
            "Reference baseline",
            (
                (str(baseline / "predictions.csv"), str(baseline / "history.csv"), "podium baseline --preset demo"),
                (str(baseline / "model.safetensors"), str(baseline / "history.csv"), "the same model, as a checkpoint"),
            ),
        ),
        DemoTeam(
            "Early Stoppers",
            ((str(weak / "predictions.csv"), str(weak / "history.csv"), "the baseline, stopped early"),),
        ),
        DemoTeam(
            "Sample Submitters",
            ((str(layout.competition / "public" / "sample_submission.csv"), None, "sample_submission.csv, unchanged"),),
        ),
    ]


@dataclass
class DemoSecrets:
    """Tokens the demo prints on every run; kept in ``<root>/demo.json`` (mode 0600)."""

    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    worker_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    teams: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "DemoSecrets":
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["admin_token"], data["worker_token"], dict(data.get("teams", {})))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n", encoding="utf-8")


def ensure_competition(layout: DemoLayout):
    from harness.build import build_competition
    from harness.competition import load_competition

    if (layout.competition / "competition.toml").is_file():
        click.echo(f"competition: reusing {layout.competition}")
        return load_competition(layout.competition)
    click.echo(f"competition: building the digits competition in {layout.competition}")
    return build_competition("digits", layout.competition.parent, name="digits", decoys=60, seed=2026)


def ensure_run(layout: DemoLayout, name: str, extra: list[str]) -> Path:
    """``podium baseline --preset demo`` into ``runs/<name>``, unless a finished run is there."""
    out = layout.runs / name
    if all((out / f).is_file() for f in DEMO_RUN_INPUTS):
        click.echo(f"{name}: reusing {out}")
        return out
    argv = [sys.executable, "-m", "podium_cli", "baseline", "--competition", str(layout.competition),
            "--preset", "demo", "--out", str(out), *extra]
    click.echo(f"{name}: training ({' '.join(['podium', *argv[3:]])})")
    result = subprocess.run(argv)
    if result.returncode != 0:
        raise PodiumError(f"training the {name} model failed (podium baseline exited {result.returncode}); see above.")
    return out


class BackgroundServer:
    """waitress on ``host:port`` in a thread, so the demo can submit to it over HTTP."""

    def __init__(self, app, host: str, port: int):
        from waitress import create_server

        try:
            self.server = create_server(app, host=host, port=port, threads=8, ident="podium")
        except OSError as exc:
            raise PodiumError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another with --port.") from None
        from leaderboard.limits import gate_waitress

        gate_waitress(self.server, app)  # bodies checked from their headers, as podium serve does
        self.port = self.server.effective_port
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="waitress", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.server.run()
        except (OSError, ValueError):
            if not self.stopping.is_set():
                raise

    def wait(self) -> None:
        while self.thread.is_alive():
            self.thread.join(0.5)

    def stop(self) -> None:
        self.stopping.set()
        self.server.close()
        self.thread.join(timeout=10)


def ensure_team_tokens(app, names: list[str], secrets_: DemoSecrets) -> None:
    """Every demo team exists and its token is known (a lost token is reset)."""
    import sqlalchemy as sa

    from leaderboard.auth import team_for_token
    from leaderboard.extensions import db
    from leaderboard.models import Team
    from leaderboard.services import create_team, reset_token

    with app.app_context():
        for name in names:
            team = db.session.scalar(sa.select(Team).where(Team.name == name))
            if team is None:
                _, secrets_.teams[name] = create_team(name)
            elif team_for_token(secrets_.teams.get(name, "")) is None:
                _, secrets_.teams[name] = reset_token(team.id)


def already_submitted(app, team_name: str, path: Path) -> bool:
    import hashlib

    import sqlalchemy as sa

    from leaderboard.extensions import db
    from leaderboard.models import Submission, Team

    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with app.app_context():
        return db.session.scalar(
            sa.select(Submission.id).join(Team).where(Team.name == team_name, Submission.sha256 == sha)
        ) is not None


def submit(url: str, token: str, path: Path, history: Path | None, note: str) -> dict:
    files = {"file": (path.name, path.open("rb"))}
    if history is not None:
        files["history"] = (history.name, history.open("rb"))
    try:
        response = requests.post(f"{url}/api/submissions", headers={"Authorization": f"Bearer {token}"},
                                 files=files, data={"note": note}, timeout=120)
    finally:
        for _, fh in files.values():
            fh.close()
    try:
        body = response.json()
    except ValueError:
        body = {"errors": [response.text[:200]]}
    if response.status_code == 429:  # the team's daily limit: say so and go on
        return {"status": "not submitted today (daily limit)", **body}
    if response.status_code not in (201, 202, 422):
        raise PodiumError([f"submitting {path.name} failed (HTTP {response.status_code}):", *body.get("errors", [])])
    return body


def start_worker(url: str, token: str, log_path: Path) -> subprocess.Popen:
    log = log_path.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "podium_cli", "worker", "--server", url, "--name", "demo-worker", "--poll", "1"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PODIUM_WORKER_TOKEN": token},
        )
    finally:
        log.close()


def wait_for_jobs(app, worker: subprocess.Popen, timeout: float) -> str:
    """Wait until no job is queued or running; returns what happened."""
    import sqlalchemy as sa

    from leaderboard.extensions import db
    from leaderboard.models import ScoringJob
    from leaderboard.protocol import JobStatus

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            pending = db.session.scalar(
                sa.select(sa.func.count(ScoringJob.id)).where(ScoringJob.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
            )
        if not pending:
            return "every job finished"
        if worker.poll() is not None:
            return f"the worker exited ({worker.returncode})"
        time.sleep(1)
    return "still scoring"


def board_lines(app) -> list[str]:
    import sqlalchemy as sa

    from leaderboard.extensions import db
    from leaderboard.models import Submission, Team

    with app.app_context():
        rows = db.session.execute(
            sa.select(Team.name, Submission.kind, Submission.status, Submission.public_score)
            .join(Team).order_by(Submission.id)
        ).all()
    return [
        f"  {name:<22} {kind:<10} {status:<8} {'' if score is None else f'public {score:.4f}'}"
        for name, kind, status, score in rows
    ]


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_demo(root: Path, host: str, port: int, epochs: int | None, serve: bool, weak_epochs: int = 2) -> int:
    from leaderboard import create_app

    layout = DemoLayout(root.resolve())
    layout.root.mkdir(parents=True, exist_ok=True)
    ensure_competition(layout)
    ensure_run(layout, "baseline", [] if epochs is None else ["--epochs", str(epochs)])
    ensure_run(layout, "weak", ["--epochs", str(weak_epochs), "--seed", "7"])

    secrets_ = DemoSecrets.load(layout.secrets_file)
    app = create_app(
        {
            "COMPETITION_DIR": str(layout.competition),
            "INSTANCE_PATH": str(layout.instance),
            "ADMIN_TOKEN": secrets_.admin_token,
            "WORKER_TOKEN": secrets_.worker_token,
            "JOB_LEASE_SECONDS": 30,
        }
    )
    teams = demo_teams(layout)
    ensure_team_tokens(app, [t.name for t in teams], secrets_)
    secrets_.save(layout.secrets_file)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the demo like Ctrl-C: worker included
    server = BackgroundServer(app, host, port)
    local = f"http://127.0.0.1:{server.port}"
    worker = start_worker(local, secrets_.worker_token, layout.worker_log)
    try:
        for team in teams:
            for file, history, note in team.uploads:
                path = Path(file)
                if already_submitted(app, team.name, path):
                    continue
                body = submit(local, secrets_.teams[team.name], path, Path(history) if history else None, note)
                click.echo(f"submitted {path.name} for {team.name}: {body.get('status')}")
        click.echo(f"scoring checkpoints with a podium worker process (pid {worker.pid}, log: {layout.worker_log}) ...")
        outcome = wait_for_jobs(app, worker, SCORING_WAIT_S)
        click.echo(f"checkpoint scoring: {outcome}")
        click.echo("\n".join(["submissions:", *board_lines(app)]))
        shown = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        click.echo(
            "\n".join(
                [
                    "",
                    f"podium demo board: http://{shown}:{server.port}/",
                    f"organizer token (admin page /admin): {secrets_.admin_token}",
                    f"worker token: {secrets_.worker_token}",
                    f"  (more workers: podium worker --server http://127.0.0.1:{server.port} --token <worker token>)",
                    "team tokens (log in with the team name and its token):",
                    *[f"  {name}: {token}" for name, token in secrets_.teams.items()],
                    f"(all kept in {layout.secrets_file})",
                ]
            )
        )
        if not serve:
            return 0
        click.echo("serving until Ctrl-C; a worker keeps scoring new checkpoint uploads.")
        server.wait()
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        server.stop()
    return 0


@click.command("demo")
@click.option("--root", default="demo", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the demo keeps its competition, runs, database and tokens.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port to serve on (0: any free port).")
@click.option("--epochs", default=None, type=int, help="Baseline epochs (default: the demo preset's).")
@click.option("--weak-epochs", default=2, show_default=True, type=int, help="Epochs of the weaker model.")
@click.option("--no-serve", is_flag=True, help="Build, train, submit and score, then exit instead of serving.")
def demo_command(root: Path, host: str, port: int, epochs: int | None, weak_epochs: int, no_serve: bool) -> int:
    """Build, train, submit and serve a living demo board."""
    return run_demo(root, host, port, epochs, serve=not no_serve, weak_epochs=weak_epochs)
