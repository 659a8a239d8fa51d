"""The HTTP clients of a leaderboard server: ``podium submit`` (a team's upload) and ``podium worker``
(a scoring machine). They talk to the server only over HTTP and share its constants through
``leaderboard.protocol``; nothing here imports the server's modules (the app, the models, the
database), which tests/test_architecture.py checks.
"""
