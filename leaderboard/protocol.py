"""What the server and its HTTP clients (``leaderboard.client``: ``podium worker``, ``podium submit``)
agree on, in one place: the state machines' values, the headers, the paths and the worker names.

This module imports nothing from podium, so the client side never pulls in the server's code.
The states are stored as these strings in the database (``submission.status``,
``scoring_job.status``); a ``StrEnum`` member *is* its string, so queries, JSON and templates
compare with them directly.
"""
from __future__ import annotations

import re
from enum import StrEnum


class SubmissionStatus(StrEnum):
    """A submission's life: ``queued`` -> (``running`` ->) ``scored`` | ``refused`` | ``failed``.

    CSVs are scored in the request (straight to scored or refused); checkpoints wait for a worker.
    ``refused`` is the team's problem (it counts toward the daily limit), ``failed`` is ours (it does not).
    """

    QUEUED = "queued"
    RUNNING = "running"
    SCORED = "scored"
    REFUSED = "refused"
    FAILED = "failed"

    @property
    def pending(self) -> bool:
        """Still waiting for a worker's result."""
        return self in PENDING


PENDING = frozenset({SubmissionStatus.QUEUED, SubmissionStatus.RUNNING})


class JobStatus(StrEnum):
    """A scoring job's life: ``queued`` -> ``running`` (a lease) -> ``done`` | ``queued`` again | ``failed``."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


# The worker protocol (server: leaderboard/jobs_api.py; client: leaderboard/client/worker.py).
JOBS_PREFIX = "/api/jobs"
CLAIM_PATH = "api/jobs/claim"  # relative to the server's address (which may carry a mount prefix)
RELEASE_PATH = "api/jobs/{job_id}/release"
SUBMISSIONS_PATH = "api/submissions"
SUBMISSION_PATH = "api/submissions/{submission_id}"
LEASE_HEADER = "X-Podium-Lease"
TEST_DATA_VERSION_HEADER = "X-Podium-Test-Data-Version"
WORKER_NAME = re.compile(r"^[\w.@:+-]{1,100}$")
WORKER_NAME_RULE = "worker must be a name of 1-100 letters, digits or . _ @ : + -"
