"""``podium tune``: hyperparameter search for the baseline with Optuna (course notes 001 §2 and 002 §4.5).

Each trial is one baseline run (``run_baseline``) on the training split, scored on the validation
split; the test set and the private folder are never read (``predict_test=False``). The value
minimised is the validation loss of the model the run keeps (the best epoch's with
``restore_best``, else the last one's). Per-epoch validation losses go to Optuna's MedianPruner,
which stops a trial whose loss is worse than the median of earlier trials at the same epoch.

The study lives in an Optuna RDB storage: ``STUDY/study.db`` (SQLite) by default, or any
``--storage`` URL (``postgresql+psycopg://...``) so that ``podium tune`` processes on several
machines share one study (Optuna's own distributed mode). ``--trials N`` is the number of
finished (complete or pruned) trials the study should hold, so running the same command again
after an interruption resumes it. Every running trial writes a heartbeat; a trial whose process
died (killed, machine lost) is marked failed once its heartbeat is older than the grace period
and queued again with the same parameters (``RetryHeartbeatStaleTrialCallback``).

The search space is a small TOML file, one table per setting of ``podium baseline``::

    [lr]                      # a float setting: low/high (log = true: log-uniform), or step
    low = 1e-4
    high = 0.3
    log = true
    grid = [0.005, 0.02, 0.08]   # the values --sampler grid tries
    [batch_size]
    choices = [32, 64, 128]   # categorical (grid: these choices)
    [epochs]                  # an int setting: low/high, optional step and log
    low = 2
    high = 8
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import socket
import sys
import time
import tomllib
import warnings
from pathlib import Path

from baseline.config import (
    BaselineConfig,
    check_config,
    config_changes,
    write_config_file,
)
from harness.errors import PodiumError

SAMPLERS = ("tpe", "random", "grid")
DEFAULT_STUDY_NAME = "podium-tune"
# Settings that say where or how a run happens, not what it learns: never searched.
NOT_TUNABLE = ("preset", "device", "progress", "extra", "threads", "workers", "data_path", "compile", "deterministic",
               "amp", "val_fraction", "eval_batch_size")

DEFAULT_SPACE_TOML = """\
# podium tune's default search space: one table per setting of `podium baseline`.
# float/int settings: low, high, optional log = true (log-uniform) or step; any setting: choices = [...].
# grid = [...] lists the values `--sampler grid` tries (choices are used when there is no grid).

[lr]
low = 1e-4
high = 0.3
log = true
grid = [0.005, 0.02, 0.08]

[batch_size]
choices = [32, 64, 128]

[momentum]
low = 0.0
high = 0.95
grid = [0.0, 0.9]

[weight_decay]
low = 1e-6
high = 1e-2
log = true
grid = [0.0001, 0.001]

[epochs]
low = 2
high = 8
grid = [4, 8]
"""


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "float", "int" or "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()
    grid: tuple = ()

    def suggest(self, trial):
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def to_dict(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, (), False) and k != "name"}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_space(text: str, where: str = "search space") -> list[Param]:
    """The parameters of a search-space TOML text, each checked against ``BaselineConfig``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PodiumError(f"{where} is not valid TOML: {exc}.") from None
    defaults = BaselineConfig()
    tunable = sorted({f.name for f in dataclasses.fields(BaselineConfig)} - set(NOT_TUNABLE) - {"mean", "std"})
    params, problems = [], []
    for name, table in data.items():
        if name not in tunable:
            problems.append(f"{name} is not a setting podium tune can search; choose from {', '.join(tunable)}.")
            continue
        if not isinstance(table, dict):
            problems.append(f"[{name}] must be a table (low/high/log/step/grid, or choices).")
            continue
        extra = set(table) - {"low", "high", "log", "step", "choices", "grid"}
        if extra:
            problems.append(f"[{name}]: unknown key(s) {', '.join(sorted(extra))}.")
        default = getattr(defaults, name)
        grid = table.get("grid", [])
        if not isinstance(grid, list):
            problems.append(f"[{name}]: grid must be a list of values.")
            grid = ()
        if "choices" in table:
            choices = table["choices"]
            if not isinstance(choices, list) or not choices:
                problems.append(f"[{name}]: choices must be a non-empty list.")
                continue
            if not all(isinstance(c, (str, int, float, bool)) for c in choices):
                problems.append(f"[{name}]: choices must be numbers, strings or booleans.")
                continue
            params.append(Param(name, "categorical", choices=tuple(choices), grid=tuple(grid or choices)))
            continue
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            problems.append(f"[{name}] is not a number: give it choices = [...].")
            continue
        low, high, log, step = table.get("low"), table.get("high"), table.get("log", False), table.get("step")
        kind = "int" if isinstance(default, int) else "float"
        if not (_number(low) and _number(high) and low <= high):
            problems.append(f"[{name}]: low and high must be numbers with low <= high, got {low!r} and {high!r}.")
            continue
        if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
            problems.append(f"[{name}] is a whole number: low and high must be whole numbers.")
            continue
        if not isinstance(log, bool) or (log and low <= 0):
            problems.append(f"[{name}]: log must be true or false, and log needs low above 0.")
            continue
        if step is not None and (not _number(step) or step <= 0 or log):
            problems.append(f"[{name}]: step must be a positive number, and cannot be combined with log.")
            continue
        if kind == "int":
            low, high, step = int(low), int(high), (int(step) if step is not None else None)
        else:
            low, high = float(low), float(high)
        params.append(Param(name, kind, low=low, high=high, log=log, step=step, grid=tuple(grid)))
    if problems:
        raise PodiumError([f"{where}: {p}" for p in problems])
    if not params:
        raise PodiumError(f"{where} has no parameters to search.")
    return params


def load_space(path: Path | None) -> tuple[list[Param], str]:
    if path is None:
        return parse_space(DEFAULT_SPACE_TOML, "the default search space"), DEFAULT_SPACE_TOML
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PodiumError(f"The search space file {path} does not exist.") from None
    return parse_space(text, str(path)), text


@contextlib.contextmanager
def quiet_experimental():
    """Optuna marks the heartbeat retry, stale-trial check and matplotlib plots experimental."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def make_storage(url: str, heartbeat: int):
    """An Optuna RDB storage with heartbeats; a trial whose process died is failed and queued again."""
    import optuna
    import sqlalchemy

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        for attempt in range(6):
            try:
                with quiet_experimental():
                    return optuna.storages.RDBStorage(
                        url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
                    )
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
                # Two processes creating the tables of a new storage at once: one of them loses the race
                # (UNIQUE constraint on alembic_version, "database is locked"); the tables exist on the retry.
                if attempt == 5:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except ImportError as exc:
        raise PodiumError(f"The storage {url.split('://')[0]} needs a driver that is not installed ({exc}); "
                          "for PostgreSQL install psycopg (`pip install 'psycopg[binary]'`).") from None
    except Exception as exc:  # sqlalchemy's errors: a bad URL, a server that does not answer
        if type(exc).__module__.startswith("sqlalchemy"):
            raise PodiumError(f"Could not open the study storage {url!r}: {str(exc).splitlines()[0][:300]}") from None
        raise


def make_sampler(name: str, params: list[Param], seed: int | None):
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    missing = [p.name for p in params if not p.grid]
    if missing:
        raise PodiumError(f"--sampler grid needs a grid = [...] list (or choices) for {', '.join(missing)}.")
    return optuna.samplers.GridSampler({p.name: list(p.grid) for p in params}, seed=seed)


def make_pruner(prune: bool, startup: int, warmup: int):
    import optuna

    if not prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)


@dataclasses.dataclass(frozen=True)
class TuneJob:
    """Everything one tuning process needs (picklable: sent to the --jobs worker processes)."""

    competition_dir: str
    base: dict  # BaselineConfig fields
    space_text: str
    storage_url: str
    study_name: str
    trials: int
    sampler: str
    sampler_seed: int | None
    prune: bool
    prune_startup: int
    prune_warmup: int
    heartbeat: int
    timeout: float | None


def _base_config(job: TuneJob) -> BaselineConfig:
    base = dict(job.base)
    base["mean"], base["std"] = tuple(base["mean"]), tuple(base["std"])
    return BaselineConfig(**base)


FINISHED = ("COMPLETE", "PRUNED")


def finished_trials(study) -> int:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def open_study(job: TuneJob, params: list[Param]):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=make_storage(job.storage_url, job.heartbeat),
        study_name=job.study_name,
        direction="minimize",
        sampler=make_sampler(job.sampler, params, job.sampler_seed),
        pruner=make_pruner(job.prune, job.prune_startup, job.prune_warmup),
        load_if_exists=True,
    )
    settings = {"preset": job.base["preset"], "base": config_changes(_base_config(job)),
                "space": {p.name: p.to_dict() for p in params}}
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", settings)
        study.set_user_attr("competition", str(job.competition_dir))
    elif stored != json.loads(json.dumps(settings)):
        raise PodiumError(
            f"The study {job.study_name!r} was started with other settings or another search space "
            f"({json.dumps(stored)}); resume it with the same ones, or start a new study (another --out or --study-name)."
        )
    return study


def objective_for(job: TuneJob, params: list[Param]):
    import optuna

    from baseline.train import run_baseline

    base = _base_config(job)

    def objective(trial) -> float:
        values = {p.name: p.suggest(trial) for p in params}
        config = dataclasses.replace(base, progress=False, **values)
        check_config(config)  # an impossible combination fails this trial only (caught below)
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("host", socket.gethostname())

        def on_epoch(row: dict) -> None:
            loss = row["val_loss"]
            trial.report(loss if loss is not None and math.isfinite(loss) else math.inf, row["epoch"])
            if trial.should_prune():
                trial.set_user_attr("pruned_after_epoch", row["epoch"])
                raise optuna.TrialPruned(f"validation loss {loss:.4g} at epoch {row['epoch']} is worse than the median")

        started = time.perf_counter()
        result = run_baseline(config, job.competition_dir, None, on_epoch=on_epoch, predict_test=False)
        kept = next(row for row in result.history if row["epoch"] == result.model_epoch)
        trial.set_user_attr("val_acc", kept["val_acc"])
        trial.set_user_attr("epochs_run", len(result.history))
        trial.set_user_attr("model_epoch", result.model_epoch)
        trial.set_user_attr("seconds", time.perf_counter() - started)
        loss = kept["val_loss"]
        return loss if math.isfinite(loss) else math.inf

    return objective


def grid_size(params: list[Param]) -> int:
    return math.prod(len(p.grid) for p in params)


def target_trials(job: TuneJob, params: list[Param]) -> int:
    """The finished trials the study should end with: ``--trials``, or fewer with ``--sampler grid``
    when the grid has fewer points (each point is tried once; a resumed full grid adds nothing)."""
    return min(job.trials, grid_size(params)) if job.sampler == "grid" else job.trials


def run_worker(job: TuneJob, progress: bool = False) -> int:
    """One process's share of the search: trials until the study holds ``target_trials`` finished ones."""
    import optuna

    params = parse_space(job.space_text)
    study = open_study(job, params)
    target = target_trials(job, params)
    remaining = target - finished_trials(study)
    if remaining <= 0:
        return 0
    stop = optuna.study.MaxTrialsCallback(
        target, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    )
    with quiet_experimental():
        study.optimize(objective_for(job, params), n_trials=remaining, timeout=job.timeout, callbacks=[stop],
                       catch=(PodiumError,), gc_after_trial=True, show_progress_bar=progress)
    return 0


def _worker_main(job: TuneJob) -> None:
    sys.exit(run_worker(job))


def tune(job: TuneJob, out_dir: Path, jobs: int = 1, progress: bool = False) -> dict:
    """Run the search with ``jobs`` processes on one storage, then write the study's summary to ``out_dir``."""
    import multiprocessing

    params = parse_space(job.space_text)
    study = open_study(job, params)  # create it (and check a resumed one) before any worker starts
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "space.toml").write_text(job.space_text, encoding="utf-8")
    if jobs < 1:
        raise PodiumError(f"--jobs must be at least 1, got {jobs}.")
    workers = []
    if jobs > 1:
        ctx = multiprocessing.get_context("spawn")
        workers = [ctx.Process(target=_worker_main, args=(job,), daemon=False) for _ in range(jobs - 1)]
        for w in workers:
            w.start()
    try:
        run_worker(job, progress=progress)
    finally:
        for w in workers:
            w.join()
    failed = [w.exitcode for w in workers if w.exitcode != 0]
    notes = []
    if target_trials(job, params) < job.trials:
        notes.append(f"--sampler grid: the grid has {grid_size(params)} points, each tried once, "
                     f"so the study ends there rather than at --trials {job.trials}.")
    if failed:
        notes.append(f"{len(failed)} worker process(es) ended with an error (exit codes {failed}).")
    return write_summary(study, job, out_dir, notes)


def write_summary(study, job: TuneJob, out_dir: Path, notes: list[str] | None = None) -> dict:
    """best.toml (a preset file for `podium baseline --config`), trials.csv, summary.json and the plots."""
    import optuna

    from harness.diagnosis import json_safe

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in optuna.trial.TrialState}
    summary: dict = {"study": job.study_name, "storage": _redact(job.storage_url), "trials": counts,
                     "notes": list(notes or [])}
    with open(out_dir / "trials.csv", "w", newline="", encoding="utf-8") as fh:
        names = sorted({name for t in trials for name in t.params})
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["number", "state", "val_loss", "val_acc", "epochs_run", *names, "seconds", "retry_of"])
        for t in trials:
            out.writerow([t.number, t.state.name, "" if t.value is None else t.value, t.user_attrs.get("val_acc", ""),
                          t.user_attrs.get("epochs_run", ""), *[t.params.get(n, "") for n in names],
                          t.user_attrs.get("seconds", ""), t.system_attrs.get("failed_trial", "")])
    if complete:
        best = min(complete, key=lambda t: t.value)
        config = dataclasses.replace(_base_config(job), **best.params)
        comment = (
            f"Written by podium tune: the best of {len(complete)} complete trial(s) of study {job.study_name!r}\n"
            f"(trial {best.number}: validation loss {best.value:.5g}, validation accuracy "
            f"{best.user_attrs.get('val_acc', float('nan')):.4f}).\n"
            f"Train it: podium baseline --competition {job.competition_dir} --config {out_dir / 'best.toml'}"
        )
        write_config_file(out_dir / "best.toml", config.preset, config_changes(config), comment)
        summary["best"] = {"trial": best.number, "val_loss": best.value, "val_acc": best.user_attrs.get("val_acc"),
                           "params": best.params, "preset_file": str(out_dir / "best.toml")}
        summary["plots"] = write_plots(study, out_dir, summary["notes"])
    else:
        summary["notes"].append("no trial has completed yet: no best.toml or plots")
    (out_dir / "summary.json").write_text(json.dumps(json_safe(summary), indent=2, default=str) + "\n", encoding="utf-8")
    return summary


def _redact(url: str) -> str:
    """A storage URL without its password."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def write_plots(study, out_dir: Path, notes: list[str]) -> list[str]:
    """Optimisation history and parameter importances as PNG (Optuna's matplotlib backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as vis

    written = []
    with quiet_experimental():
        for name, plot in (("history.png", vis.plot_optimization_history), ("importances.png", vis.plot_param_importances)):
            if name == "importances.png" and len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
                notes.append("importances.png not drawn: parameter importances need at least 2 complete trials")
                continue
            try:
                ax = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importances of a single trial
                notes.append(f"{name} not drawn: {exc}")
                continue
            fig = ax.figure
            try:
                fig.set_size_inches(8, 5)
                fig.tight_layout()
                fig.savefig(out_dir / name, dpi=100)
            finally:
                plt.close(fig)
            written.append(name)
    return written
