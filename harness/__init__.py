"""podium's harness: the competition format, submission validation, metrics and scoring.

Never imports Flask. Imports torch only inside checkpoint scoring, so scoring a CSV stays fast.
"""
