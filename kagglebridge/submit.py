"""``podium kaggle submit`` and ``podium kaggle board``: the client's calls, podium's checks and messages."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from harness.competition import PUBLIC, Competition, Solution, load_competition
from harness.errors import PodiumError, SubmissionError

MAX_BOARD_PAGES = 200
BOARD_PAGE_SIZE = 100


def _test_ids(competition: Competition) -> tuple[str, ...]:
    """The test ids, read by harness's own readers whatever the data format (test.npz's ``ids``, or
    image folders' ``test.csv``); a hidden test set the local copy does not hold is said so."""
    from harness.competition import load_test_ids
    from harness.errors import CompetitionError

    try:
        ids = load_test_ids(competition)
    except CompetitionError as exc:
        if competition.hidden_test:
            raise PodiumError(
                f"{competition.root} keeps its test set hidden (hidden_test = true) and this copy does not hold it, "
                "so podium has no test ids to check a CSV against and sends nothing. Point --competition at the "
                "organizer's copy (its private/ holds the test data), or submit with `kaggle competitions submit`."
            ) from None
        raise PodiumError(exc.messages) from None
    except (OSError, ValueError) as exc:
        raise PodiumError(f"{competition.test_path}: the test ids could not be read ({exc}).") from None
    return tuple(str(i) for i in ids)


def check_for_kaggle(file: Path, competition: Competition) -> None:
    """podium's own checks of a CSV against the local competition, every test id required (as on Kaggle)."""
    from harness.scoring import file_kind
    from harness.submission import parse_csv_submission

    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise SubmissionError(f"{file}: {exc.strerror or exc}.") from None
    if not data:
        raise SubmissionError("The file is empty; choose your predictions CSV.")
    if file_kind(data[:64]) != "csv":
        raise SubmissionError("Kaggle takes a predictions CSV, not a checkpoint: write one with "
                              "`podium score CHECKPOINT --competition DIR --save-predictions preds.csv`.")
    if len(data) > competition.limits.max_csv_bytes:
        raise SubmissionError(f"The file is larger than {competition.limits.max_csv_bytes / 2**20:.0f} MiB, "
                              "the limit for a csv submission.")
    ids = _test_ids(competition)
    # Every id is required (Kaggle's solution holds the decoys too); the labels are not needed to check.
    solution = Solution(ids=ids, labels=np.zeros(len(ids), dtype=np.int64), usage=np.full(len(ids), PUBLIC, dtype=np.int8))
    parse_csv_submission(data, solution, competition.classes)


def submit(file: Path, slug: str, message: str, competition_dir: Path) -> str:
    """Check ``file`` locally, then submit it through the client; returns Kaggle's message."""
    from kagglebridge.client import kaggle_api, kaggle_errors

    competition = load_competition(competition_dir)
    check_for_kaggle(file, competition)  # before the client is even imported: nothing is sent on a bad file
    api = kaggle_api()
    with kaggle_errors(f"submitting {Path(file).name} to {slug}"):
        response = api.competition_submit(str(file), message, slug, quiet=True)
    if response.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
        raise PodiumError(f"Kaggle did not take the upload of {Path(file).name}: {response.message}")
    ref = getattr(response, "ref", None)
    return f"{response.message}" + (f" (ref {ref})" if ref else "")


def fetch_board(slug: str) -> list[dict]:
    """Every row of the Kaggle board of ``slug``: rank, team, score, date (ISO, UTC)."""
    from kagglebridge.client import kaggle_api, kaggle_errors

    api = kaggle_api()
    from kagglesdk.competitions.types.competition_api_service import ApiGetLeaderboardRequest

    rows: list[dict] = []
    token = ""
    with kaggle_errors(f"reading the leaderboard of {slug}"), api.build_kaggle_client() as client:
        for _ in range(MAX_BOARD_PAGES):
            request = ApiGetLeaderboardRequest()
            request.competition_name = slug
            request.page_size = BOARD_PAGE_SIZE
            request.page_token = token
            response = client.competitions.competition_api_client.get_leaderboard(request)
            for entry in response.submissions or []:
                when = entry.submission_date
                rows.append({
                    "rank": len(rows) + 1,
                    "team": entry.team_name or "",
                    "score": entry.score or "",
                    "date": when.replace(tzinfo=dt.timezone.utc).isoformat(timespec="seconds") if when else "",
                })
            token = response.next_page_token or ""
            if not token:
                break
    return rows


def send_board(slug: str, rows: list[dict], server: str, token: str) -> str:
    """Store the board on a podium server as its Kaggle tab; returns the tab's address."""
    import requests

    url = server.rstrip("/") + "/api/kaggle/board"
    try:
        response = requests.post(url, json={"slug": slug, "rows": rows},
                                 headers={"Authorization": f"Bearer {token}"}, timeout=60)
    except requests.RequestException as exc:
        raise PodiumError(f"The podium server at {server} could not be reached ({exc}).") from None
    if response.status_code != 201:
        try:
            body = response.json()
            message = body.get("message") or "; ".join(body.get("errors", [])) or response.text
        except ValueError:
            message = response.text[:300]
        raise PodiumError(f"The podium server at {server} refused the board ({response.status_code}): {message}")
    return response.json().get("url", server)
