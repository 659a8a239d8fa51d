"""The podium leaderboard: a Flask app built by ``create_app`` (``leaderboard/app.py``, flaskr's factory).

Importing this package loads nothing of the server: the HTTP clients (``leaderboard.client``:
``podium submit``, ``podium worker``) and ``leaderboard.protocol`` run on machines without Flask's
app, its database or its blueprints. ``from leaderboard import create_app`` loads the server.
"""
from __future__ import annotations

__all__ = ["create_app", "current_competition", "current_solution", "now"]

_SERVER = {"create_app": "leaderboard.app", "_instance_secret": "leaderboard.app",
           "current_competition": "leaderboard.state", "current_solution": "leaderboard.state",
           "now": "leaderboard.state"}


def __getattr__(name: str):
    if name in _SERVER:
        import importlib

        return getattr(importlib.import_module(_SERVER[name]), name)
    raise AttributeError(f"module 'leaderboard' has no attribute {name!r}")
