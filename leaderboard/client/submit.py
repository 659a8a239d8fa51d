"""``podium submit``: upload a submission to a leaderboard server over its JSON API, wait for its score."""
from __future__ import annotations

import time
from pathlib import Path

import click

from harness.errors import PodiumError
from leaderboard.protocol import PENDING, SUBMISSION_PATH, SUBMISSIONS_PATH, SubmissionStatus


def _show_result(body: dict) -> None:
    score = body.get("public_score")
    ci = body.get("public_ci") or [None, None]
    metric = (body.get("result") or {}).get("primary_metric", "score")
    mode = body.get("public_board")
    if mode in ("rounded", "ladder"):  # probing protection: the server sends only the protected value
        click.echo(f"submission {body.get('id')}: public {metric} {score}  (shown {mode}: probing protection "
                   "until the reveal)")
    else:
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
            response = requests.post(f"{base}/{SUBMISSIONS_PATH}", headers=headers, files=files,
                                     data={"note": note}, timeout=600)
        except requests.RequestException as exc:
            raise PodiumError(f"Could not reach {base}: {exc}") from None
    body = _json(response)
    if response.status_code in (401, 413, 429) or response.status_code >= 500 or (
        response.status_code >= 400 and "id" not in body
    ):
        raise PodiumError(body.get("errors") or [f"The server answered {response.status_code}."])
    if body.get("status") == SubmissionStatus.REFUSED:
        click.echo(f"submission {body.get('id')} was refused:", err=True)
        for message in body.get("errors") or body.get("messages") or []:
            click.echo(f"  {message}", err=True)
        return 2
    if body.get("status") in PENDING:
        click.echo(f"submission {body['id']} is queued for a scoring worker")
        if not wait:
            return 0
        body = _wait(base, headers, body["id"], timeout)
        if body.get("status") != SubmissionStatus.SCORED:
            for message in body.get("messages") or []:
                click.echo(f"  {message}", err=True)
            click.echo(f"submission {body.get('id')}: {body.get('status')}", err=True)
            return 2 if body.get("status") == SubmissionStatus.REFUSED else 1
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
                response = requests.get(f"{base}/{SUBMISSION_PATH.format(submission_id=submission_id)}", headers=headers,
                                    timeout=30)
            except requests.RequestException as exc:
                raise PodiumError(f"Could not reach {base} while waiting for submission {submission_id} "
                                  f"(it stays queued; see it on the board): {exc}") from None
            body = _json(response)
            if response.status_code != 200:
                raise PodiumError(body.get("errors") or [f"The server answered {response.status_code}."])
            if body.get("status") not in PENDING:
                return body
            time.sleep(2)
            bar.update(2)
    raise PodiumError(f"Submission {submission_id} was not scored within {timeout:.0f} s; it stays queued.")
