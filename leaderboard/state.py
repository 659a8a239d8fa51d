"""What one app instance holds besides its config: the competition, its answers, a board cache."""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from flask import current_app

from harness.competition import Competition, Solution
from leaderboard.config import Config


@dataclass
class BoardCache:
    """Computed boards by name, each stored with the board version it was computed at."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _entries: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._entries[key] = value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass
class PodiumState:
    competition: Competition
    solution: Solution
    storage_root: Path
    config: Config = field(default_factory=Config)
    board_cache: BoardCache = field(default_factory=BoardCache)


def podium_state() -> PodiumState:
    return current_app.extensions["podium"]


def current_competition() -> Competition:
    return podium_state().competition


def current_solution() -> Solution:
    return podium_state().solution


def current_config() -> Config:
    return podium_state().config


def now() -> dt.datetime:
    """The current UTC time; tests move it with the ``NOW`` config key (a callable)."""
    clock: Callable[[], dt.datetime] | None = current_app.config.get("NOW")
    value = clock() if clock is not None else dt.datetime.now(dt.timezone.utc)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value
