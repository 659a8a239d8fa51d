"""`podium tune`: Optuna search on the digits competition (a real torchvision shufflenet at 16 px, CPU, real processes)."""
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
from harness.diagnosis import read_history
from harness.errors import PodiumError

SPACE = """
[lr]
low = 0.01
high = 0.1
log = true
[batch_size]
choices = [64, 128]
"""
# shufflenet_v2_x0_5: a real torchvision network, seven times cheaper per epoch than the demo's resnet18 at 16 px
FAST = ["--preset", "demo", "--arch", "shufflenet_v2_x0_5", "--image-size", "16", "--crop-padding", "2", "--threads", "1",
        "--quiet"]
# Half the training digits held out: each trial's epoch costs half as much (what the tests below need
# is real trials, not good models).
QUICK = [*FAST, "--val-fraction", "0.5"]

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
            # Read the study with the search stopped, so that what is read is what the kill leaves
            # (a trial's last epoch can end between a read and a kill).
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                trials = optuna_study(url).get_trials(deepcopy=False)
            except Exception:  # the study is still being created, or stopped mid-write
                trials = []
            done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
            running = [t for t in trials if t.state.name == "RUNNING" and t.intermediate_values]
            if done and running:
                return running[0]  # still stopped: killed below
            os.kill(proc.pid, signal.SIGCONT)
            return None

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
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_processes_share_one_study(digits_competition, tmp_path, backend, request):
    """Optuna's distributed mode: two `podium tune` processes, one storage, one study of 4 trials; on
    one SQLite file and on a real PostgreSQL server (tests/pg.py's throwaway cluster, psycopg)."""
    (tmp_path / "space.toml").write_text("[lr]\nlow = 0.01\nhigh = 0.1\nlog = true\n")
    if backend == "sqlite":
        url = f"sqlite:///{(tmp_path / 'shared.db').resolve()}"
    else:
        url = request.getfixturevalue("pg_url")
        assert url.startswith("postgresql+psycopg://")

    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen(
            [*PODIUM, "tune", "--competition", str(digits_competition.root), *QUICK, "--epochs", "1",
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
    assert len({t.number for t in finished}) == len(finished)  # one numbering: one study
    for name in ("a", "b"):
        assert not (tmp_path / name / "study.db").exists()  # the shared storage, not a local one
        assert read_config_file(tmp_path / name / "best.toml")[0] == "demo"
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["storage"].split("://")[0] == url.split("://")[0]
    if backend == "postgresql":
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:  # the trials really are rows of the PostgreSQL database
                rows = conn.execute(sa.text("SELECT count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
                                            "WHERE s.study_name = 'shared'")).scalar_one()
        finally:
            engine.dispose()
        assert rows == len(study.get_trials(deepcopy=False))


def cli_job(competition, out: Path, space: str, trials: int, options: dict):
    """The TuneJob `podium tune` builds for these options (so a test can prepare its study first)."""
    from baseline.cli import config_from_options
    from baseline.tune import DEFAULT_STUDY_NAME, TuneJob

    config = config_from_options("demo", None, progress=False, **options)
    return TuneJob(competition_dir=str(competition), base=config.to_dict(), space_text=space,
                   storage_url=f"sqlite:///{(out / 'study.db').resolve()}", study_name=DEFAULT_STUDY_NAME,
                   trials=trials, sampler="random", sampler_seed=None, prune=True, prune_startup=2, prune_warmup=1,
                   heartbeat=10, timeout=None)


@pytest.mark.slow
def test_the_median_pruner_stops_hopeless_trials(digits_competition, tmp_path):
    """A space whose top learning rate (1e4) is hopeless by construction: SGD steps ten thousand times
    the gradient blow the weights up in the first batches, so the validation loss after epoch 1 is
    astronomical or not finite (reported as inf), far above any sane trial's. Two sane trials are put
    first in the study's queue (Optuna's enqueue_trial), so the MedianPruner (2 start-up trials, 1
    warm-up epoch: the defaults) has its median when the hopeless ones report epoch 1."""
    space = "[lr]\nlow = 0.01\nhigh = 10000.0\nlog = true\n"
    (tmp_path / "space.toml").write_text(space)
    out = tmp_path / "study"
    out.mkdir()
    options = {"arch": "shufflenet_v2_x0_5", "image_size": 16, "crop_padding": 2, "threads": 1, "val_fraction": 0.5,
               "epochs": 2}
    from baseline.tune import open_study, parse_space

    study = open_study(cli_job(digits_competition.root, out, space, 4, options), parse_space(space))
    for lr in (0.02, 0.05, 10000.0, 3000.0):
        study.enqueue_trial({"lr": lr})
    proc = subprocess.run([*PODIUM, "tune", "--competition", str(digits_competition.root), *QUICK, "--epochs", "2",
                           "--out", str(out), "--trials", "4", "--space", str(tmp_path / "space.toml"),
                           "--sampler", "random"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    trials = sorted(optuna_study(f"sqlite:///{(out / 'study.db').resolve()}").get_trials(deepcopy=False),
                    key=lambda t: t.number)
    assert [t.params["lr"] for t in trials] == [0.02, 0.05, 10000.0, 3000.0]
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED"], [
        (t.params, t.state.name, t.intermediate_values) for t in trials]
    sane_first_epoch = sorted(t.intermediate_values[1] for t in trials[:2])
    for t in trials[2:]:  # pruned after epoch 1, worse than the median of the complete trials there
        assert t.user_attrs["pruned_after_epoch"] == 1 and list(t.intermediate_values) == [1]
        assert t.intermediate_values[1] > sum(sane_first_epoch) / 2
    assert all(list(t.intermediate_values) == [1, 2] for t in trials[:2])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"]["pruned"] == 2 and summary["trials"]["complete"] == 2
    assert summary["best"]["params"]["lr"] in (0.02, 0.05)
    assert "2 complete, 2 pruned" in proc.stdout
    rows = (out / "trials.csv").read_text().splitlines()
    assert sum(",PRUNED," in row for row in rows) == 2


@pytest.mark.slow
def test_jobs_run_trials_in_several_processes(digits_competition, tmp_path):
    """--jobs 2: the command runs trials itself and in one more process, on its one study.db."""
    (tmp_path / "space.toml").write_text("[lr]\nlow = 0.01\nhigh = 0.1\nlog = true\n")
    out = tmp_path / "study"
    proc = subprocess.Popen([*PODIUM, "tune", "--competition", str(digits_competition.root), *QUICK, "--epochs", "2",
                             "--out", str(out), "--trials", "4", "--jobs", "2", "--no-prune",
                             "--space", str(tmp_path / "space.toml"), "--sampler", "random"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-4000:]
    trials = optuna_study(f"sqlite:///{(out / 'study.db').resolve()}").get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    assert 4 <= len(finished) <= 5 and len(finished) == len(trials)
    pids = {t.user_attrs["pid"] for t in finished}
    assert len(pids) == 2 and proc.pid in pids, (pids, proc.pid)  # the command itself and one worker process
    assert f"study podium-tune: {len(finished)} complete" in stdout


@pytest.mark.slow
def test_timeout_starts_no_trial_after_it(digits_competition, tmp_path):
    """--timeout S: no trial starts more than S seconds after the search began (Optuna's timeout,
    checked before each trial); the running trial finishes and the summary is written."""
    (tmp_path / "space.toml").write_text("[lr]\nlow = 0.01\nhigh = 0.1\nlog = true\n")
    out = tmp_path / "study"
    timeout = 3.0
    proc = subprocess.run([*PODIUM, "tune", "--competition", str(digits_competition.root), *QUICK, "--epochs", "1",
                           "--out", str(out), "--trials", "30", "--timeout", str(timeout), "--no-prune",
                           "--space", str(tmp_path / "space.toml"), "--sampler", "random"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    trials = optuna_study(f"sqlite:///{(out / 'study.db').resolve()}").get_trials(deepcopy=False)
    assert 1 <= len(trials) < 30 and all(t.state.name == "COMPLETE" for t in trials)
    first = min(t.datetime_start for t in trials)
    for t in trials:  # the search starts just before its first trial; 1 s of slack for a loaded machine
        assert (t.datetime_start - first).total_seconds() <= timeout + 1.0, [x.datetime_start for x in trials]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"]["complete"] == len(trials) and (out / "best.toml").is_file()


@pytest.mark.slow
def test_tpe_search_draws_importances_and_its_best_toml_trains(digits_competition, tmp_path):
    """--sampler tpe (its first trials are TPE's random start-up) with two parameters and no pruning:
    history.png and importances.png are drawn, and `podium baseline --config best.toml`, run as a
    command, trains the best trial's settings again, to the same validation loss."""
    space = "[lr]\nlow = 0.01\nhigh = 0.1\nlog = true\n[momentum]\nlow = 0.5\nhigh = 0.95\n"
    (tmp_path / "space.toml").write_text(space)
    out = tmp_path / "study"
    proc = subprocess.run([*PODIUM, "tune", "--competition", str(digits_competition.root), *QUICK, "--epochs", "2",
                           "--out", str(out), "--trials", "3", "--no-prune", "--space", str(tmp_path / "space.toml"),
                           "--sampler", "tpe", "--sampler-seed", "3"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    study = optuna_study(f"sqlite:///{(out / 'study.db').resolve()}")
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert all(set(t.params) == {"lr", "momentum"} for t in trials)
    assert len({t.params["lr"] for t in trials}) == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plots"] == ["history.png", "importances.png"]
    for name in ("history.png", "importances.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        from PIL import Image

        with Image.open(out / name) as image:
            assert image.size == (800, 500)  # 8 x 5 inches at 100 dpi

    best = study.best_trial
    run_dir = tmp_path / "best"
    trained = subprocess.run([*PODIUM, "baseline", "--competition", str(digits_competition.root), "--config",
                              str(out / "best.toml"), "--quiet", "--out", str(run_dir)],
                             capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-4000:]
    report = json.loads((run_dir / "report.json").read_text())
    config = report["config"]
    assert (config["preset"], config["lr"], config["momentum"], config["epochs"]) == (
        "demo", best.params["lr"], best.params["momentum"], 2)
    assert (config["image_size"], config["val_fraction"], config["threads"]) == (16, 0.5, 1)
    history = read_history(run_dir / "history.csv")
    assert len(history) == 2 and (run_dir / "predictions.csv").is_file() and (run_dir / "model.safetensors").is_file()
    # The same settings, seed and data on the same machine: the trial's validation loss again.
    assert history[-1]["val_loss"] == pytest.approx(best.value, rel=1e-6)


@pytest.mark.slow
def test_grid_search_tries_every_point_once(digits_competition, tmp_path):
    """--sampler grid over a 2 x 2 grid with --trials 10: four trials, one per point, then it stops;
    run again, it adds nothing."""
    space = "[lr]\nlow = 0.005\nhigh = 0.1\nlog = true\ngrid = [0.01, 0.05]\n[momentum]\nchoices = [0.0, 0.9]\n"
    (tmp_path / "space.toml").write_text(space)
    out = tmp_path / "study"
    cmd = [*PODIUM, "tune", "--competition", str(digits_competition.root), *QUICK, "--epochs", "1", "--out", str(out),
           "--trials", "10", "--no-prune", "--space", str(tmp_path / "space.toml"), "--sampler", "grid"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "the grid has 4 points" in proc.stdout
    url = f"sqlite:///{(out / 'study.db').resolve()}"
    trials = optuna_study(url).get_trials(deepcopy=False)
    assert sorted((t.params["lr"], t.params["momentum"]) for t in trials) == [
        (0.01, 0.0), (0.01, 0.9), (0.05, 0.0), (0.05, 0.9)]
    assert all(t.state.name == "COMPLETE" for t in trials)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    assert len(optuna_study(url).get_trials(deepcopy=False)) == 4
    assert json.loads((out / "summary.json").read_text())["trials"]["complete"] == 4


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
