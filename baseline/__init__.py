"""The reference model of course notes 002 §4.10 (CIFAR-10, ResNet50): data paths, training, run directory.

Uses ``harness`` for the competition format, metrics and the diagnosis; never Flask or leaderboard.
"""
