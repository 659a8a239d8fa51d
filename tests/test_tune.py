"""`podium tune`: Optuna search on the digits competition (real resnet18 at 16 px, CPU, real processes)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baseline.config import read_config_file, resolve_config
from baseline.tune import DEFAULT_SPACE_TOML, make_sampler, parse_space
from harness.errors import PodiumError

SPACE = """
[lr]
low = 0.01
high = 0.1
log = true
[batch_size]
choices = [64, 128]
"""
FAST = ["--preset", "demo", "--image-size", "16", "--crop-padding", "2", "--threads", "1", "--quiet"]

PODIUM = [sys.executable, "-m", "podium_cli"]  # the `podium` command, as a real process


def optuna_study(url: str, name: str = "podium-tune"):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=url)


def states(study) -> dict[int, str]:
    return {t.number: t.state.name for t in study.get_trials(deepcopy=False)}


def test_default_space_and_refusals():
    params = {p.name: p for p in parse_space(DEFAULT_SPACE_TOML)}
    assert set(params) == {"lr", "batch_size", "momentum", "weight_decay", "epochs"}
    assert params["lr"].kind == "float" and params["lr"].log and params["epochs"].kind == "int"
    assert params["batch_size"].kind == "categorical" and params["batch_size"].choices == (32, 64, 128)
    for text, message in [
        ("[lrr]\nlow = 1\nhigh = 2\n", "not a setting podium tune can search"),
        ("[device]\nchoices = ['cpu']\n", "not a setting"),
        ("[lr]\nlow = 0.1\nhigh = 0.01\n", "low <= high"),
        ("[lr]\nlow = 0\nhigh = 0.1\nlog = true\n", "log needs low above 0"),
        ("[epochs]\nlow = 1.5\nhigh = 3\n", "whole numbers"),
        ("[lr_schedule]\nlow = 1\nhigh = 2\n", "give it choices"),
        ("[lr]\nlow = 0.01\nhigh = 0.1\nmax = 3\n", "unknown key"),
        ("", "no parameters"),
    ]:
        with pytest.raises(PodiumError, match=message):
            parse_space(text)
    with pytest.raises(PodiumError, match="--sampler grid needs a grid"):
        make_sampler("grid", parse_space(SPACE), None)
    grid_space = "[lr]\nchoices = [0.01, 0.1]\n[epochs]\nlow = 1\nhigh = 3\ngrid = [1, 3]\n"
    assert type(make_sampler("grid", parse_space(grid_space), None)).__name__ == "GridSampler"


def test_tune_refuses_a_run_without_validation(digits_competition, tmp_path):
    proc = subprocess.run([*PODIUM, "tune", "--competition", str(digits_competition.root), *FAST, "--out",
                           str(tmp_path / "s"), "--trials", "2", "--val-fraction", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--val-fraction must be above 0" in proc.stderr


def wait_for(predicate, timeout: float, proc: subprocess.Popen, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"podium tune ended (rc {proc.returncode}) before {what}:\n{out}\n{err[-3000:]}")
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_random_search_resumes_after_sigkill_and_never_reads_private_or_test(digits_competition, tmp_path):
    comp = tmp_path / "comp"
    shutil.copytree(digits_competition.root, comp)
    away = tmp_path / "away"
    away.mkdir()
    shutil.move(comp / "private", away / "private")  # for the whole search: any read of it fails
    shutil.move(comp / "public" / "test.npz", away / "test.npz")
    (tmp_path / "space.toml").write_text(SPACE)
    study_dir = tmp_path / "study"
    cmd = [*PODIUM, "tune", "--competition", str(comp), *FAST, "--epochs", "2", "--out", str(study_dir),
           "--trials", "4", "--sampler", "random", "--space", str(tmp_path / "space.toml"), "--heartbeat", "1"]
    url = f"sqlite:///{(study_dir / 'study.db').resolve()}"

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        def mid_trial():
            if not (study_dir / "study.db").exists():
                return None
            try:
                trials = optuna_study(url).get_trials(deepcopy=False)
            except Exception:  # the study is still being created
                return None
            done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
            running = [t for t in trials if t.state.name == "RUNNING" and t.intermediate_values]
            return running[0] if done and running else None

        killed = wait_for(mid_trial, 300, proc, "a second trial was half done")
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no finally: the trial stays RUNNING in the study
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    study = optuna_study(url)
    assert states(study)[killed.number] == "RUNNING"
    finished_before = sum(s in ("COMPLETE", "PRUNED") for s in states(study).values())
    assert 1 <= finished_before < 4

    time.sleep(2.5)  # past the grace period (2 heartbeats): the killed trial is now stale
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    study = optuna_study(url)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4  # the search finished where it was asked to
    assert states(study)[killed.number] == "FAIL"  # the killed trial was failed by its stale heartbeat ...
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].params == killed.params  # ... and run again with its parameters
    assert retry[0].state.name in ("COMPLETE", "PRUNED")
    assert all(t.state.name in ("COMPLETE", "PRUNED", "FAIL") for t in trials)
    assert not (comp / "private").exists() and not (comp / "public" / "test.npz").exists()

    # The best settings are a preset file that `podium baseline --config` reads.
    best = min((t for t in finished if t.state.name == "COMPLETE"), key=lambda t: t.value)
    preset, settings = read_config_file(study_dir / "best.toml")
    config = resolve_config(preset, **settings)
    assert (config.preset, config.lr, config.batch_size, config.epochs, config.image_size) == (
        "demo", best.params["lr"], best.params["batch_size"], 2, 16)
    summary = json.loads((study_dir / "summary.json").read_text())
    assert summary["best"]["trial"] == best.number and summary["trials"]["fail"] == 1
    assert "history.png" in summary["plots"]
    for name in summary["plots"]:
        assert (study_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (study_dir / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("number,state,val_loss") and len(rows) == 1 + len(trials)
    assert f"best: trial {best.number}" in resumed.stdout


@pytest.mark.slow
def test_two_processes_share_one_study(digits_competition, tmp_path):
    """Optuna's distributed mode: two `podium tune` processes, one storage, one study of 4 trials."""
    (tmp_path / "space.toml").write_text("[lr]\nlow = 0.01\nhigh = 0.1\nlog = true\n")
    url = f"sqlite:///{(tmp_path / 'shared.db').resolve()}"

    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen(
            [*PODIUM, "tune", "--competition", str(digits_competition.root), *FAST, "--epochs", "1",
             "--out", str(tmp_path / name), "--trials", "4", "--space", str(tmp_path / "space.toml"),
             "--storage", url, "--study-name", "shared", "--sampler", "random"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    procs = [start("a"), start("b")]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-4000:]
    study = optuna_study(url, "shared")
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    # Each process stops once the study holds 4 finished trials; the other may be finishing one more.
    assert 4 <= len(finished) <= 5
    assert {t.user_attrs["pid"] for t in finished} == {p.pid for p in procs}  # both worked on it
    assert not (tmp_path / "a" / "study.db").exists()  # the shared storage, not a local one
    for name in ("a", "b"):
        assert read_config_file(tmp_path / name / "best.toml")[0] == "demo"


def test_a_resumed_study_refuses_other_settings(tmp_path):
    """The study remembers its preset, settings and space; resuming it with others is a user error."""
    import dataclasses

    from baseline.tune import TuneJob, open_study, write_summary

    config = resolve_config("demo", image_size=16)
    job = TuneJob(competition_dir=str(tmp_path), base=config.to_dict(), space_text=SPACE,
                  storage_url=f"sqlite:///{tmp_path / 's.db'}", study_name="s", trials=2, sampler="random",
                  sampler_seed=None, prune=True, prune_startup=2, prune_warmup=1, heartbeat=5, timeout=None)
    open_study(job, parse_space(SPACE))
    open_study(job, parse_space(SPACE))  # the same settings: resumed
    with pytest.raises(PodiumError, match="was started with other settings"):
        open_study(dataclasses.replace(job, base=resolve_config("demo", image_size=24).to_dict()), parse_space(SPACE))
    other = SPACE.replace("high = 0.1", "high = 0.2")
    with pytest.raises(PodiumError, match="another search space"):
        open_study(dataclasses.replace(job, space_text=other), parse_space(other))
    # No trial yet: the summary says so and writes no preset file.
    summary = write_summary(open_study(job, parse_space(SPACE)), job, tmp_path)
    assert not (tmp_path / "best.toml").exists() and "no trial has completed" in summary["notes"][0]
