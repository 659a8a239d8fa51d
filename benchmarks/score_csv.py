"""CSV scoring speed: podium's path against the naive one, measured in the same run.

    .venv/bin/python benchmarks/score_csv.py [--rows 10000] [--repeats 30] [--folder 1000]

Prints three figures for a 10,000-row CSV on a 10-class competition:
1. validate + score on three splits + 1000-resample bootstrap CI, median of repeats, beside the
   naive path (pandas + scikit-learn `classification_report` per split + one scikit-learn call
   per bootstrap resample), and the ratio;
2. `podium evaluate` over a folder of N such submissions, as a process;
3. the whole `podium score sub.csv` command, as a process (median of 5).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.competition import USAGES, load_competition, load_solution  # noqa: E402
from harness.scoring import score_file  # noqa: E402

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def make_competition(directory: Path, rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-sized scoring setup: competition.toml and private/solution.csv (no images needed)."""
    rng = np.random.default_rng(seed)
    (directory / "private").mkdir(parents=True)
    (directory / "competition.toml").write_text(
        f'name = "bench"\nclasses = {list(CLASSES)!r}\nprimary_metric = "accuracy"\n'.replace("'", '"')
    )
    ids = np.array([f"{v:010x}" for v in rng.choice(16**10, size=rows, replace=False)])
    labels = rng.integers(0, 10, rows)
    usage = np.where(rng.random(rows) < 0.3, 0, 1)
    lines = ["id,label,Usage"] + [f"{i},{CLASSES[l]},{USAGES[u]}" for i, l, u in zip(ids, labels, usage)]
    (directory / "private" / "solution.csv").write_text("\n".join(lines) + "\n")
    return ids, labels


def write_submission(path: Path, ids: np.ndarray, labels: np.ndarray, accuracy: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    preds = np.where(rng.random(len(labels)) < accuracy, labels, rng.integers(0, 10, len(labels)))
    order = rng.permutation(len(ids))
    path.write_text("id,label\n" + "".join(f"{ids[i]},{CLASSES[preds[i]]}\n" for i in order))


def naive_score(sub_path: Path, solution_df, resamples: int = 1000, seed: int = 0) -> dict:
    """What one writes first: pandas, scikit-learn's report per split, a scikit-learn call per resample."""
    import pandas as pd
    from sklearn.metrics import accuracy_score, classification_report

    sub = pd.read_csv(sub_path)
    if list(sub.columns) != ["id", "label"] or sub["id"].duplicated().any():
        raise ValueError("bad submission")
    merged = solution_df.merge(sub, on="id", how="left", suffixes=("_true", "_pred"))
    if merged["label_pred"].isna().any():
        raise ValueError("missing ids")
    out = {}
    rng = np.random.default_rng(seed)
    for split, mask in (
        ("public", merged["Usage"] == "Public"),
        ("private", merged["Usage"] == "Private"),
        ("all", merged["Usage"] != "Ignored"),
    ):
        part = merged[mask]
        y_true, y_pred = part["label_true"].to_numpy(), part["label_pred"].to_numpy()
        report = classification_report(y_true, y_pred, labels=list(CLASSES), output_dict=True, zero_division=0)
        boot = [
            accuracy_score(y_true[idx], y_pred[idx])
            for idx in (rng.integers(0, len(y_true), len(y_true)) for _ in range(resamples))
        ]
        out[split] = (report["accuracy"] if "accuracy" in report else accuracy_score(y_true, y_pred),
                      np.quantile(boot, [0.025, 0.975]))
    return out


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--naive-repeats", type=int, default=5)
    parser.add_argument("--folder", type=int, default=1000, help="submissions in the evaluate folder")
    args = parser.parse_args()
    podium = [sys.executable, "-m", "podium_cli"]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ids, labels = make_competition(tmp / "comp", args.rows)
        comp = load_competition(tmp / "comp")
        sub = tmp / "sub.csv"
        write_submission(sub, ids, labels, 0.8, seed=1)

        solution = load_solution(comp)
        ours = timed(lambda: score_file(sub, comp, solution), args.repeats)

        import pandas as pd

        solution_df = pd.read_csv(comp.solution_path)
        naive = timed(lambda: naive_score(sub, solution_df), args.naive_repeats)
        # Both paths must agree on the scores before their times mean anything.
        ours_report, naive_report = score_file(sub, comp, solution), naive_score(sub, solution_df)
        for split in ("public", "private", "all"):
            assert abs(ours_report.split(split).accuracy - naive_report[split][0]) < 1e-12, split

        m_ours, m_naive = statistics.median(ours) * 1e3, statistics.median(naive) * 1e3
        print(f"1. {args.rows:,}-row CSV: validate + score 3 splits + 1000-resample bootstrap (median)")
        print(f"   podium   {m_ours:8.1f} ms   (target <= 50 ms)")
        print(f"   naive    {m_naive:8.1f} ms   (pandas + classification_report + scikit-learn per resample)")
        print(f"   ratio    {m_naive / m_ours:8.1f}x  (target >= 5x)")

        folder = tmp / "submissions"
        for n in range(args.folder):
            team = folder / f"team{n % 100:03d}"
            team.mkdir(parents=True, exist_ok=True)
            write_submission(team / f"sub{n}.csv", ids, labels, 0.5 + 0.4 * (n % 97) / 97, seed=n)
        start = time.perf_counter()
        out = subprocess.run([*podium, "evaluate", str(folder), "--competition", str(comp.root)],
                             capture_output=True, text=True, cwd=ROOT)
        elapsed = time.perf_counter() - start
        assert out.returncode == 0, out.stderr
        print(f"2. podium evaluate, {args.folder:,} submissions of {args.rows:,} rows: {elapsed:.1f} s  (target <= 30 s)")

        walls = []
        for _ in range(5):
            start = time.perf_counter()
            out = subprocess.run([*podium, "score", str(sub), "--competition", str(comp.root)],
                                 capture_output=True, text=True, cwd=ROOT)
            walls.append(time.perf_counter() - start)
            assert out.returncode == 0, out.stderr
        print(f"3. `podium score sub.csv` as a process: {statistics.median(walls):.2f} s wall, median of 5  (target <= 1.0 s)")


if __name__ == "__main__":
    main()
