"""The reference model of seed 002 §4.10 (CIFAR-10, ResNet50): data paths, training, run directory.

Uses ``harness`` for the competition format, metrics and the diagnosis; never Flask or leaderboard.
"""
