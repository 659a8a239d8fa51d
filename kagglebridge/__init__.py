"""podium talking to Kaggle through the official ``kaggle`` client (imported lazily, only when used).

``podium kaggle export`` (a Kaggle Community competition bundle from a podium competition),
``podium kaggle submit`` (podium's own checks first, then the client), ``podium kaggle board``
(Kaggle's board printed, or stored on a podium server as its "Kaggle" tab) and
``podium init kaggle`` (a competition's files downloaded through the client). Depends on ``harness``
only; the server side of the tab lives in ``leaderboard/kaggle_api.py``.
"""
