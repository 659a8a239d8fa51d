"""``podium serve`` and ``podium team add|list``: thin commands over the app (``podium submit`` is in
``leaderboard.client.submit``)."""
from __future__ import annotations

from pathlib import Path

import click

from leaderboard.config import default


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
@click.option("--threads", default=8, show_default=True, type=int, help="Worker threads (per process with --processes).")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes: above 1, gunicorn with that many worker processes (Linux); 1: waitress.")
@click.option("--access-log", default=None, help="With --processes: gunicorn's access log file ('-' for stdout).")
@click.option("--connection-limit", default=None, type=click.IntRange(1),
              help="Most open connections at once; more wait in the listen queue (waitress; with --processes: "
                   f"gunicorn's worker_connections, per process) [default: {default('connection_limit')}].")
@click.option("--channel-timeout", default=None, type=click.IntRange(1),
              help="Seconds waitress keeps an idle or stalled connection (not with --processes: gunicorn keeps an "
                   f"idle keep-alive connection 2 s) [default: {default('channel_timeout')}].")
@click.option("--proxies", default=None, type=int,
              help=f"Reverse proxies in front (nginx, Caddy): trust that many X-Forwarded-For/-Proto hops "
                   f"[default: {default('trusted_proxies')}].")
@click.option("--team-session-hours", default=None, type=float,
              help=f"How long a team's browser login lasts (from the login, not renewed) "
                   f"[default: {default('team_session_lifetime') / 3600:g}].")
@click.option("--admin-session-hours", default=None, type=float,
              help=f"How long the organizer's browser login lasts [default: {default('admin_session_lifetime') / 3600:g}].")
@click.option("--team-quota-mb", default=None, type=int,
              help=f"Storage each team's uploads may take; 0 for no quota [default: {default('team_storage_quota') // 2**20}].")
@click.option("--secure-cookies", is_flag=True, help="Mark the session cookie Secure (set this when serving behind HTTPS).")
@click.option("--admin-token", envvar="PODIUM_ADMIN_TOKEN", default=None, help="Organizer token (default: generated into the instance folder).")
@click.option("--worker-token", envvar="PODIUM_WORKER_TOKEN", default=None, help="Scoring workers' token (default: generated into the instance folder).")
def serve_command(competition: str, db: str | None, instance: str | None, host: str, port: int, threads: int,
                  connection_limit: int | None, channel_timeout: int | None, proxies: int | None,
                  team_session_hours: float | None, admin_session_hours: float | None, team_quota_mb: int | None,
                  processes: int, access_log: str | None,
                  secure_cookies: bool, admin_token: str | None, worker_token: str | None) -> int:
    """Run the leaderboard under waitress (a production WSGI server), or gunicorn with --processes N."""
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
    if secure_cookies:  # otherwise PODIUM_SECURE_COOKIES or the default (leaderboard/config.py)
        config["SESSION_COOKIE_SECURE"] = True
    # Given options win; otherwise the environment or the default (leaderboard/config.py).
    for key, value in (("TEAM_STORAGE_QUOTA", team_quota_mb * 2**20 if team_quota_mb is not None else None),
                       ("TRUSTED_PROXIES", proxies),
                       ("TEAM_SESSION_LIFETIME", team_session_hours * 3600 if team_session_hours is not None else None),
                       ("ADMIN_SESSION_LIFETIME", admin_session_hours * 3600 if admin_session_hours is not None else None),
                       ("CONNECTION_LIMIT", connection_limit), ("CHANNEL_TIMEOUT", channel_timeout)):
        if value is not None:
            config[key] = value
    from leaderboard.hardening import startup_sweep, warn_exposed_files, warn_shared_counts

    if processes > 1:  # gunicorn: each worker process builds its own app (leaderboard/serving.py)
        from leaderboard.serving import serve_processes

        if channel_timeout is not None:
            click.echo("note: --channel-timeout is waitress's; with --processes gunicorn closes an idle keep-alive "
                       "connection after 2 s and a worker thread waits at most 5 s for a request to start "
                       "(put a buffering proxy in front against slow clients: README, section 4b)", err=True)
        click.echo(f"podium leaderboard on http://{host}:{port}/  ({processes} processes x {threads} threads; "
                   f"organizer and worker tokens in {instance_dir} unless given; Ctrl-C to stop)")
        serve_processes(config, host, port, processes, threads, access_log=access_log,
                        on_master=lambda app: (warn_exposed_files(app, click.echo), warn_shared_counts(app, click.echo),
                                               startup_sweep(app, click.echo)))
        return 0
    if access_log:
        raise click.UsageError("--access-log goes with --processes N (gunicorn's access log)")
    app = create_app(config)
    warn_exposed_files(app, click.echo)
    startup_sweep(app, click.echo)
    if not admin_token:
        click.echo(f"organizer token: in {instance_dir / 'admin_token'} (log in at /admin/login)")
    if not worker_token:
        click.echo(f"worker token:    in {instance_dir / 'worker_token'} (podium worker --token ...)")
    click.echo(f"podium leaderboard on http://{host}:{port}/  (Ctrl-C to stop)")
    gated_waitress_server(app, host, port, threads).run()  # body limits before reading: limits.py
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
    from leaderboard.services import create_team

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


@click.command("gc")
@click.option("--competition", "competition", required=True, type=click.Path(exists=True, file_okay=False),
              help="The competition directory (with competition.toml).")
@click.option("--db", default=None, help="SQLAlchemy database URL (default: SQLite in the instance folder).")
@click.option("--instance", type=click.Path(file_okay=False), default=None, help="Instance folder; default ./instance.")
@click.option("--min-age", default=None, type=float,
              help=f"Minutes a file must be old before it is removed (spares uploads in flight) "
                   f"[default: {default('orphan_grace_seconds') / 60:g}, ORPHAN_GRACE_SECONDS].")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def gc_command(competition: str, db: str | None, instance: str | None, min_age: float | None, dry_run: bool) -> int:
    """Remove stored files no submission keeps: refused uploads, orphans of interrupted requests."""
    from harness.filemodes import use_private_umask
    from leaderboard import create_app
    from leaderboard.gc import sweep_orphans

    use_private_umask()
    app = create_app(_config(competition, db, instance))
    with app.app_context():
        swept = sweep_orphans(min_age * 60 if min_age is not None else None, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for relative, size in swept.removed:
        click.echo(f"{verb} {relative} ({size} bytes)")
    click.echo(f"{verb} {len(swept.removed)} file(s), {swept.bytes / 2**20:.1f} MiB")
    return 0


@click.command("audit")
@_competition_option
@click.option("--baseline", default=None, metavar="SCORE|CSV",
              help="Reference for 'implausible': a score such as 0.85, or your reference model's predictions "
                   "CSV (podium baseline's predictions.csv), scored on the public rows. Default: the median "
                   "of the teams' best public scores.")
@click.option("--max-share", type=click.FloatRange(0.0, 1.0), default=None,
              help="Flag a team's checkpoint and CSV that disagree on more than this share of rows (default 0.02).")
@click.option("--all", "show_all", is_flag=True, help="Print every pair, not only the 20 most suspicious.")
def audit_command(competition: str, db: str | None, instance: str | None, baseline: str | None,
                  max_share: float | None, show_all: bool) -> int:
    """Print the organizer's audit: evidence, not verdicts, with how each number was computed."""
    from leaderboard import create_app
    from leaderboard.audit_evidence import MAX_SHARE, SECTIONS, format_evidence, gather, reference_score

    app = create_app(_config(competition, db, instance))
    with app.app_context():
        how = None
        if baseline is not None:
            try:
                score = float(baseline)
            except ValueError:
                score, how = reference_score(baseline), f"the public score of {baseline}"
            if not 0.0 <= score <= 1.0:
                raise click.BadParameter("a score between 0 and 1, or a predictions CSV", param_hint="--baseline")
            baseline = score
        report = gather(baseline, max_share=MAX_SHARE if max_share is None else max_share, baseline_how=how)
        click.echo(f"{report.teams} ranked teams (best public submission each), {report.rows} scored rows; "
                   f"{report.flagged()} flagged. Evidence, not verdicts.")
        if report.left_out:
            click.echo(f"left out (predictions not readable): {', '.join(report.left_out)}")
        click.echo(f"reference score {report.baseline:.4f}: {report.baseline_how}")
        for key, title in SECTIONS:
            items = report.evidence.get(key, [])
            flagged = sum(e.flagged for e in items)
            click.echo(f"\n== {title}: {flagged} flagged of {len(items)}")
            if not items:
                click.echo("   nothing to compare")
                continue
            click.echo(f"   how: {items[0].how}")
            for e in items if show_all else items[:20]:
                click.echo("   " + format_evidence(e))
            if not show_all and len(items) > 20:
                click.echo(f"   ... {len(items) - 20} more (--all)")
    return 0
