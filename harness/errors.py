"""The one family of errors a user can cause.

Each carries messages written for the person who can fix the problem. The CLI prints them
without a traceback and exits 2; the web shows them on the page or as JSON with status 400/422.
"""
from __future__ import annotations

MAX_MESSAGES = 20


class PodiumError(Exception):
    """A problem the user can fix. ``messages`` is a list of sentences for that user."""

    def __init__(self, messages: str | list[str]):
        if isinstance(messages, str):
            messages = [messages]
        self.messages: list[str] = list(messages)
        super().__init__("\n".join(self.messages))


class CompetitionError(PodiumError):
    """The competition directory or its settings are missing or invalid (the organizer's fix)."""


class DatasetError(PodiumError):
    """A dataset could not be loaded or downloaded."""


class SubmissionError(PodiumError):
    """A submitted file was refused. Messages never reveal a hidden label or the split."""


class CheckpointError(SubmissionError):
    """A submitted model checkpoint was refused or could not be run."""


def capped(messages: list[str], limit: int = MAX_MESSAGES) -> list[str]:
    """The first ``limit`` messages, then one line counting the rest."""
    if len(messages) <= limit:
        return list(messages)
    rest = len(messages) - limit
    return messages[:limit] + [f"... and {rest} more problem{'s' if rest != 1 else ''} not shown."]
