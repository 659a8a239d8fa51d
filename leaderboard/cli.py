"""``podium serve``, ``podium team add|list`` and ``podium submit``: thin commands over the app."""
from __future__ import annotations

import time
from pathlib import Path

import click

from harness.errors import PodiumError


def _config(competition: str, db: str | None, instance: str | None) -> dict:
    """The app's config for every command: the instance folder defaults to ``./instance`` for all
    of them (not Flask's folder beside the package), so ``team add`` writes where ``serve`` reads."""
    config: dict = {"COMPETITION_DIR": competition, "INSTANCE_PATH": instance or "instance"}
    if db:
        config["SQLALCHEMY_DATABASE_URI"] = db
    return config


def _competition_option(f):
    f = click.option("--instance", type=click.Path(file_okay=False), default=None,
                     help="Instance folder (database, secrets, stored submissions); default ./instance.")(f)
    f = click.option("--db", default=None, help="SQLAlchemy database URL (default: SQLite in the instance folder).")(f)
    f = click.option("--competition", "competition", required=True, type=click.Path(exists=True, file_okay=False),
                     help="The competition directory (with competition.toml).")(f)
    return f


@click.command("serve")
@_competition_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int, help="waitress worker threads.")
@click.option("--connection-limit", default=500, show_default=True, type=int,
              help="Most open connections at once (waitress); more wait in the listen queue.")
@click.option("--channel-timeout", default=60, show_default=True, type=int,
              help="Seconds an idle or stalled connection is kept (waitress).")
@click.option("--proxies", default=0, show_default=True, type=int,
              help="Reverse proxies in front (nginx, Caddy): trust that many X-Forwarded-For/-Proto hops.")
@click.option("--team-session-hours", default=7 * 24.0, show_default=True, type=float,
              help="How long a team's browser login lasts (from the login, not renewed).")
@click.option("--admin-session-hours", default=12.0, show_default=True, type=float,
              help="How long the organizer's browser login lasts.")
@click.option("--team-quota-mb", default=5000, show_default=True, type=int,
              help="Storage each team's uploads may take; 0 for no quota.")
@click.option("--secure-cookies", is_flag=True, help="Mark the session cookie Secure (set this when serving behind HTTPS).")
@click.option("--admin-token", envvar="PODIUM_ADMIN_TOKEN", default=None, help="Organizer token (default: generated into the instance folder).")
@click.option("--worker-token", envvar="PODIUM_WORKER_TOKEN", default=None, help="Scoring workers' token (default: generated into the instance folder).")
def serve_command(competition: str, db: str | None, instance: str | None, host: str, port: int, threads: int,
                  connection_limit: int, channel_timeout: int, proxies: int, team_session_hours: float,
                  admin_session_hours: float, team_quota_mb: int,
                  secure_cookies: bool, admin_token: str | None, worker_token: str | None) -> int:
    """Run the leaderboard under waitress (a production WSGI server)."""
    from harness.filemodes import use_private_umask
    from leaderboard import _instance_secret, create_app
    from leaderboard.limits import gated_waitress_server

    use_private_umask()  # the instance folder, database, secrets and storage: owner only

    config = _config(competition, db, instance)
    if admin_token is not None:
        from leaderboard.security import check_admin_token_strength

        check_admin_token_strength(admin_token)
    instance_dir = Path(config["INSTANCE_PATH"]).resolve()
    config["ADMIN_TOKEN"] = admin_token or _instance_secret(instance_dir, "admin_token")
    config["WORKER_TOKEN"] = worker_token or _instance_secret(instance_dir, "worker_token")
    config["SESSION_COOKIE_SECURE"] = secure_cookies
    config["TEAM_STORAGE_QUOTA"] = team_quota_mb * 1024 * 1024
    config["TRUSTED_PROXIES"] = proxies
    config["TEAM_SESSION_LIFETIME"] = team_session_hours * 3600
    config["ADMIN_SESSION_LIFETIME"] = admin_session_hours * 3600
    app = create_app(config)
    from leaderboard.hardening import startup_sweep, warn_exposed_files

    warn_exposed_files(app, click.echo)
    startup_sweep(app, click.echo)
    if not admin_token:
        click.echo(f"organizer token: in {instance_dir / 'admin_token'} (log in at /admin/login)")
    if not worker_token:
        click.echo(f"worker token:    in {instance_dir / 'worker_token'} (podium worker --token ...)")
    click.echo(f"podium leaderboard on http://{host}:{port}/  (Ctrl-C to stop)")
    gated_waitress_server(app, host, port, threads, connection_limit=connection_limit,
                          channel_timeout=channel_timeout).run()  # body limits before reading: limits.py
    return 0


@click.group("team")
def team_group() -> None:
    """Manage teams (add, list)."""


@team_group.command("add")
@click.argument("name")
@_competition_option
def team_add(name: str, competition: str, db: str | None, instance: str | None) -> int:
    """Create a team and print its token (shown once: only a hash is stored)."""
    from harness.filemodes import use_private_umask
    from leaderboard import create_app

    use_private_umask()
    from leaderboard.auth import create_team

    app = create_app(_config(competition, db, instance))
    with app.app_context():
        team, token = create_team(name)
        click.echo(f"team:  {team.name} ({team.slug})")
        click.echo(f"token: {token}")
        click.echo("Keep the token: it is shown only now. Log in with the team name and this token.")
    return 0


@team_group.command("list")
@_competition_option
def team_list(competition: str, db: str | None, instance: str | None) -> int:
    """List the teams with their submission counts."""
    import sqlalchemy as sa

    from leaderboard import create_app
    from leaderboard.extensions import db as database
    from leaderboard.models import Submission, Team

    app = create_app(_config(competition, db, instance))
    with app.app_context():
        rows = database.session.execute(
            sa.select(Team.slug, Team.name, sa.func.count(Submission.id)).outerjoin(Submission)
            .group_by(Team.id).order_by(Team.name)
        ).all()
        for slug, name, count in rows:
            click.echo(f"{slug}\t{count} submission{'s' if count != 1 else ''}\t{name}")
        if not rows:
            click.echo("no teams yet: podium team add NAME --competition DIR")
    return 0


def _show_result(body: dict) -> None:
    score = body.get("public_score")
    ci = body.get("public_ci") or [None, None]
    metric = (body.get("result") or {}).get("primary_metric", "score")
    click.echo(f"submission {body.get('id')}: public {metric} {score}  (95 % interval {ci[0]} - {ci[1]})")
    if body.get("late"):
        click.echo("late: kept and scored, not ranked")
    if "submissions_left_today" in body:
        click.echo(f"{body['submissions_left_today']} submission(s) left today (UTC)")


@click.command("submit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--server", required=True, help="The leaderboard's address, e.g. http://127.0.0.1:5000")
@click.option("--token", required=True, envvar="PODIUM_TOKEN", help="Your team token (or $PODIUM_TOKEN).")
@click.option("--note", default="", help="A note shown with the submission.")
@click.option("--history", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The training history.csv, for curves and a diagnosis on the submission page.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for a checkpoint to be scored.")
@click.option("--timeout", default=900.0, show_default=True, help="Seconds to wait for a checkpoint's score.")
def submit_command(file: str, server: str, token: str, note: str, history: str | None, wait: bool,
                   timeout: float) -> int:
    """Upload a submission (CSV or checkpoint) and print its score or why it was refused (exit 2)."""
    import requests

    base = server.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    with open(file, "rb") as fh, (open(history, "rb") if history else _Null()) as hist:
        files = {"file": (Path(file).name, fh)}
        if history:
            files["history"] = (Path(history).name, hist)
        try:
            response = requests.post(f"{base}/api/submissions", headers=headers, files=files,
                                     data={"note": note}, timeout=600)
        except requests.RequestException as exc:
            raise PodiumError(f"Could not reach {base}: {exc}") from None
    body = _json(response)
    if response.status_code in (401, 413, 429) or response.status_code >= 500 or (
        response.status_code >= 400 and "id" not in body
    ):
        raise PodiumError(body.get("errors") or [f"The server answered {response.status_code}."])
    if body.get("status") == "refused":
        click.echo(f"submission {body.get('id')} was refused:", err=True)
        for message in body.get("errors") or body.get("messages") or []:
            click.echo(f"  {message}", err=True)
        return 2
    if body.get("status") in ("queued", "running"):
        click.echo(f"submission {body['id']} is queued for a scoring worker")
        if not wait:
            return 0
        body = _wait(base, headers, body["id"], timeout)
        if body.get("status") != "scored":
            for message in body.get("messages") or []:
                click.echo(f"  {message}", err=True)
            click.echo(f"submission {body.get('id')}: {body.get('status')}", err=True)
            return 2 if body.get("status") == "refused" else 1
    _show_result(body)
    return 0


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _json(response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {"errors": [f"The server answered {response.status_code} without JSON."]}
    return body if isinstance(body, dict) else {}


def _wait(base: str, headers: dict, submission_id: int, timeout: float) -> dict:
    import requests
    from tqdm import tqdm

    deadline = time.monotonic() + timeout
    body: dict = {}
    with tqdm(desc="waiting for a worker", unit="s", bar_format="{desc}: {elapsed}") as bar:
        while time.monotonic() < deadline:
            try:
                response = requests.get(f"{base}/api/submissions/{submission_id}", headers=headers, timeout=30)
            except requests.RequestException as exc:
                raise PodiumError(f"Could not reach {base} while waiting for submission {submission_id} "
                                  f"(it stays queued; see it on the board): {exc}") from None
            body = _json(response)
            if response.status_code != 200:
                raise PodiumError(body.get("errors") or [f"The server answered {response.status_code}."])
            if body.get("status") not in ("queued", "running"):
                return body
            time.sleep(2)
            bar.update(2)
    raise PodiumError(f"Submission {submission_id} was not scored within {timeout:.0f} s; it stays queued.")
