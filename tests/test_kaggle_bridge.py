"""Part 2 of Kaggle interop: ``podium kaggle export|submit|board`` and ``podium init kaggle``.

"Kaggle" here is a real podium server speaking part 1 (tests/test_kaggle_api.py), reached by the real
official client inside the podium commands (KAGGLE_API_ENVIRONMENT=LOCALHOST + HTTP_PROXY): nothing is
mocked. The podium commands run as real processes.
"""
from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
import sqlalchemy as sa
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from tests.conftest import PODIUM, noisy_predictions, write_submission
from harness.competition import load_competition, load_solution
from harness.scoring import score_file
from tests.kaggle_live import kaggle_env, set_toml
from leaderboard.services import create_team
from leaderboard.extensions import db
from leaderboard.intake import Upload, accept
from leaderboard.models import Submission, Team
from tests.live import LiveServer, make_test_app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

EVIL = "<b>Evil & Co</b>"


def read_rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def podium_cmd(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*PODIUM, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def kaggle_site(tmp_path_factory, digits_competition, digits_solution):
    """A podium server playing Kaggle: competition 'digits', two teams with scored submissions."""
    root = tmp_path_factory.mktemp("kaggle-site")
    competition = root / "digits"
    shutil.copytree(digits_competition.root, competition)
    app = make_test_app(root, competition)
    teams = {}
    with app.app_context():
        for name, accuracy in ((EVIL, 0.9), ("Blue Team", 0.6), ("Submitter", None)):
            team, token = create_team(name)
            teams[name] = (team.slug, token)
            if accuracy is not None:
                preds = noisy_predictions(digits_solution, accuracy, seed=len(teams))
                body = "id,label\n" + "".join(f"{i},{int(p)}\n" for i, p in zip(digits_solution.ids, preds))
                accept(team, Upload(filename="p.csv", data=body.encode()))
    with LiveServer(app) as server:
        yield {"app": app, "port": server.server.effective_port, "teams": teams, "root": root,
               "competition": load_competition(competition)}


def env_as(site, tmp_path, team="Submitter"):
    slug, token = site["teams"][team]
    env = kaggle_env(site["port"], tmp_path / "home", username=slug, key=token)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1"  # podium servers by address; the client's localhost proxied
    return env


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro", "precision_macro", "recall_macro"])
def test_export_bundle_rescored_independently_gives_podiums_numbers(tmp_path, digits_competition, digits_solution,
                                                                    metric):
    competition_dir = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition_dir)
    set_toml(competition_dir / "competition.toml", primary_metric=f'"{metric}"')
    bundle = tmp_path / "bundle"
    done = podium_cmd({**kaggle_env(1, tmp_path / "home")}, "kaggle", "export", "--competition", str(competition_dir),
                      "--out", str(bundle))
    assert done.returncode == 0, done.stderr
    assert (bundle / "solution.csv").read_bytes() == (competition_dir / "private" / "solution.csv").read_bytes()
    assert (bundle / "sample_submission.csv").read_bytes() == (competition_dir / "public" / "sample_submission.csv").read_bytes()
    assert sorted(p.name for p in (bundle / "data").iterdir()) == ["classes.csv", "sample_submission.csv", "test.npz", "train.npz"]
    text = (bundle / "description.md").read_text(encoding="utf-8")
    assert "## Evaluation" in text
    assert {"accuracy": "Categorization Accuracy", "f1_macro": "F-Score (Macro)", "precision_macro": "Precision (Macro)",
            "recall_macro": "Recall (Macro)"}[metric] in text
    assert "`train.npz`" in text and "train/<class>" not in text

    # Re-score a submission from the bundle alone, with scikit-learn, the way Kaggle's metric does.
    competition = load_competition(competition_dir)
    preds = noisy_predictions(digits_solution, 0.7, seed=11)
    sub = write_submission(tmp_path / "sub.csv", digits_solution.ids, [competition.classes[p] for p in preds])
    answers = {r["id"]: r for r in read_rows(bundle / "solution.csv")}
    submitted = {r["id"]: r["label"] for r in read_rows(sub)}
    report = score_file(sub, competition)
    for usage, split in (("Public", "public"), ("Private", "private")):
        ids = [i for i, r in answers.items() if r["Usage"] == usage]
        truth, guess = [answers[i]["label"] for i in ids], [submitted[i] for i in ids]
        ours = {"accuracy": lambda: accuracy_score(truth, guess),
                "f1_macro": lambda: f1_score(truth, guess, average="macro"),
                "precision_macro": lambda: precision_score(truth, guess, average="macro"),
                "recall_macro": lambda: recall_score(truth, guess, average="macro")}[metric]()
        assert report.primary(split) == pytest.approx(ours, abs=1e-12)


def test_export_refuses_a_used_folder_and_a_competition_without_answers(tmp_path, digits_competition):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    done = podium_cmd(kaggle_env(1, tmp_path / "home"), "kaggle", "export", "--competition",
                      str(digits_competition.root), "--out", str(tmp_path / "used"))
    assert done.returncode == 2 and "already exists and is not an empty folder" in done.stderr
    public_only = tmp_path / "public-only"
    shutil.copytree(digits_competition.root, public_only, ignore=shutil.ignore_patterns("private"))
    done = podium_cmd(kaggle_env(1, tmp_path / "home"), "kaggle", "export", "--competition", str(public_only),
                      "--out", str(tmp_path / "b"))
    assert done.returncode == 2 and "solution.csv is missing" in done.stderr and "Traceback" not in done.stderr


def _count(site, team: str) -> int:
    with site["app"].app_context():
        team_id = db.session.scalar(sa.select(Team.id).where(Team.name == team))
        return db.session.scalar(sa.select(sa.func.count(Submission.id)).where(Submission.team_id == team_id))


def test_submit_checks_with_podium_first_then_sends_through_the_client(kaggle_site, tmp_path, digits_solution):
    env = env_as(kaggle_site, tmp_path)
    competition = kaggle_site["competition"]
    before = _count(kaggle_site, "Submitter")
    bad = write_submission(tmp_path / "bad.csv", digits_solution.ids[:-3], ["3"] * (len(digits_solution) - 3))
    done = podium_cmd(env, "kaggle", "submit", str(bad), "--slug", "digits", "--competition", str(competition.root))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error:" in done.stderr and "missing" in done.stderr and "Traceback" not in done.stderr
    assert _count(kaggle_site, "Submitter") == before  # nothing was sent

    preds = noisy_predictions(digits_solution, 0.8, seed=4)
    good = write_submission(tmp_path / "good.csv", digits_solution.ids, [competition.classes[p] for p in preds])
    done = podium_cmd(env, "kaggle", "submit", str(good), "--slug", "digits", "--competition", str(competition.root),
                      "--message", "from podium")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Successfully submitted" in done.stdout
    with kaggle_site["app"].app_context():
        sub = db.session.scalars(sa.select(Submission).order_by(Submission.id.desc())).first()
        assert sub.note == "from podium" and sub.status == "scored" and sub.original_name == "good.csv"

    # The "Kaggle" side refuses what it refuses, and podium says so (exit 2, the server's message).
    other = kaggle_env(kaggle_site["port"], tmp_path / "home", username="nobody", key="1.wrong")
    done = podium_cmd(other, "kaggle", "submit", str(good), "--slug", "digits", "--competition", str(competition.root))
    assert done.returncode == 2 and "These credentials do not match a team" in done.stderr


def test_missing_credentials_are_podiums_message_not_the_librarys_exit(kaggle_site, tmp_path, digits_solution):
    env = kaggle_env(kaggle_site["port"], tmp_path / "empty-home")
    competition = kaggle_site["competition"]
    good = write_submission(tmp_path / "good.csv", digits_solution.ids, ["1"] * len(digits_solution))
    for args in (["kaggle", "submit", str(good), "--slug", "digits", "--competition", str(competition.root)],
                 ["kaggle", "board", "--slug", "digits"],
                 ["init", "kaggle", "--slug", "digits", "--root", str(tmp_path / "r")]):
        done = podium_cmd(env, *args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "No Kaggle credentials found" in done.stderr
        assert "Authentication required" not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_board_printed_and_stored_as_the_kaggle_tab(kaggle_site, tmp_path, digits_competition):
    env = env_as(kaggle_site, tmp_path, "Blue Team")
    done = podium_cmd(env, "kaggle", "board", "--slug", "digits")
    assert done.returncode == 0, done.stderr
    with kaggle_site["app"].app_context():
        from leaderboard.ranking import current_board

        board = current_board()
    lines = done.stdout.splitlines()
    for row in board.rows:
        assert any(row.team_name in line and f"{row.score:.4f}" in line for line in lines), (row, done.stdout)

    # Our own server: one team has the same name as a Kaggle team; the organizer stores the board there.
    home = tmp_path / "ours"
    ours = home / "digits"
    shutil.copytree(digits_competition.root, ours)
    app = make_test_app(home, ours, ADMIN_TOKEN="our-admin")
    with app.app_context():
        create_team("Blue Team")
    with LiveServer(app) as server:
        wrong = podium_cmd(env, "kaggle", "board", "--slug", "digits", "--into-server", server.url, "--token", "nope")
        assert wrong.returncode == 2 and "refused the board (401)" in wrong.stderr
        assert requests.get(f"{server.url}/kaggle", timeout=30).status_code == 404
        assert "/kaggle" not in requests.get(server.url + "/", timeout=30).text

        stored = podium_cmd(env, "kaggle", "board", "--slug", "digits", "--into-server", server.url, "--token", "our-admin")
        assert stored.returncode == 0, stored.stderr
        assert f"{len(board.rows)} rows of the Kaggle board of digits stored" in stored.stdout
        page = requests.get(f"{server.url}/kaggle", timeout=30)
        assert page.status_code == 200
        assert "&lt;b&gt;Evil &amp; Co&lt;/b&gt;" in page.text and EVIL not in page.text
        assert '<a href="/teams/blue-team">Blue Team</a>' in page.text  # matched by name
        assert f"{board.rows[0].score:.4f}" in page.text
        assert 'href="/kaggle"' in requests.get(server.url + "/", timeout=30).text  # the tab on the board


def test_init_kaggle_builds_from_podiums_layout(kaggle_site, tmp_path):
    env = env_as(kaggle_site, tmp_path)
    root = tmp_path / "built"
    done = podium_cmd(env, "init", "kaggle", "--slug", "digits", "--root", str(root), "--name", "again")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "found podium's data layout: train.npz" in done.stdout
    built = load_competition(root / "again")
    solution = load_solution(built)
    with np.load(kaggle_site["competition"].train_path) as original, np.load(built.train_path) as train, \
            np.load(built.test_path) as test:
        assert len(train["labels"]) + len(test["ids"]) == len(original["labels"])
        assert len(solution) == len(test["ids"])
        assert set(np.unique(train["labels"])) == set(range(10))
    assert built.classes == tuple(str(i) for i in range(10))
    assert {"Public", "Private"} <= {r["Usage"] for r in read_rows(built.solution_path)}
    again = podium_cmd(env, "init", "kaggle", "--slug", "digits", "--root", str(root), "--name", "again")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_init_kaggle_describes_a_csv_and_images_layout(tmp_path, digits_competition):
    """A competition whose files are a labels CSV beside images: found and described, nothing built here."""
    from PIL import Image

    site = tmp_path / "site"
    competition = site / "pets"
    shutil.copytree(digits_competition.root, competition)
    for npz in ("train.npz",):
        (competition / "public" / npz).unlink()
    rows = ["id,label"]
    for i in range(6):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(competition / "public" / f"img{i}.png")
        rows.append(f"img{i},{i % 2}")
    (competition / "public" / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    set_toml(competition / "competition.toml", name='"pets"')
    app = make_test_app(site, competition)
    with app.app_context():
        team, token = create_team("Viewer")
        slug = team.slug
    with LiveServer(app) as server:
        env = kaggle_env(server.server.effective_port, tmp_path / "home", username=slug, key=token)
        done = podium_cmd(env, "init", "kaggle", "--slug", "pets", "--root", str(tmp_path / "out"))
    assert "found the CSV + images layout: train.csv (6 rows, columns id,label) beside ./ (6 images)" in done.stdout + done.stderr
    prepared = tmp_path / "out" / "pets-kaggle-files" / "podium-images"
    train = sorted(p.relative_to(prepared / "train").as_posix() for p in (prepared / "train").rglob("*.png"))
    test = sorted(p.name for p in (prepared / "test").iterdir())
    assert len(train) == 4 and len(test) == 2  # a stratified 20 % of each class held out (1 of 3)
    assert {t.split("/")[0] for t in train} == {"0", "1"}
    held = read_rows(prepared / "test_labels.csv")
    assert sorted(r["file"] for r in held) == test
    for row in held:  # each held-out image keeps its label from train.csv
        original = row["file"].split("-", 1)[1].removesuffix(".png")
        assert row["label"] == str(int(original.removeprefix("img")) % 2)
    if not (ROOT / "harness" / "images.py").is_file():  # this tree has no podium init images
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"podium init images --train {prepared / 'train'} --test {prepared / 'test'}" in done.stderr
        assert not (tmp_path / "out" / "pets").exists()
    else:  # podium init images is in this installation: built with its rules
        assert done.returncode == 0, done.stdout + done.stderr
        assert load_competition(tmp_path / "out" / "pets").classes == ("0", "1")


# --- image folders and hidden test sets ----------------------------------------------------------------

def images_competition(tmp_path, name="mine", **kwargs):
    from tests.test_init_images import build, make_tree

    tree = make_tree(tmp_path / f"src-{name}", per_class=4, test_per_class=2)
    comp, _ = build(tree, tmp_path / "comps", name=name, image_size=16, **kwargs)
    return comp


def tree_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_export_an_image_folders_competition_with_its_folders_and_manifests(tmp_path):
    comp = images_competition(tmp_path)
    bundle = tmp_path / "bundle"
    done = podium_cmd(kaggle_env(1, tmp_path / "home"), "kaggle", "export", "--competition", str(comp.root),
                      "--out", str(bundle))
    assert done.returncode == 0, done.stdout + done.stderr
    data = tree_of(bundle / "data")
    assert data.pop("classes.csv") == b"index,name\n0,ant\n1,bee\n2,cow\n"
    assert data == tree_of(comp.root / "public")  # train/<class>/..., train.csv, test/..., test.csv, sample
    assert any(n.startswith("train/cow/") for n in data) and any(n.startswith("test/") for n in data)
    assert (bundle / "solution.csv").read_bytes() == comp.solution_path.read_bytes()
    text = (bundle / "description.md").read_text(encoding="utf-8")
    assert "`train/<class>/<file>`" in text and "`test.csv`" in text and "ImageFolder" in text
    assert "npz" not in text
    # The ids of test.csv are the solution's, so Kaggle scores the rows podium scores.
    test_ids = [r["id"] for r in read_rows(bundle / "data" / "test.csv")]
    assert test_ids == [r["id"] for r in read_rows(bundle / "solution.csv")]


def test_export_refuses_a_hidden_test_set_unless_asked_to_publish_it(tmp_path, digits_competition):
    from harness.build import build_competition

    env = kaggle_env(1, tmp_path / "home")
    hidden = build_competition("digits", tmp_path / "comps", name="hidden", seed=5, hidden_test=True)
    refused = podium_cmd(env, "kaggle", "export", "--competition", str(hidden.root), "--out", str(tmp_path / "b"))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "keeps its test set hidden" in refused.stderr and "--publish-hidden-test" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "b").exists()

    done = podium_cmd(env, "kaggle", "export", "--competition", str(hidden.root), "--out", str(tmp_path / "b"),
                      "--publish-hidden-test")
    assert done.returncode == 0, done.stdout + done.stderr
    data = tmp_path / "b" / "data"
    assert sorted(p.name for p in data.iterdir()) == ["classes.csv", "sample_submission.csv", "test.npz", "train.npz"]
    assert (data / "test.npz").read_bytes() == (hidden.root / "private" / "test.npz").read_bytes()
    sample = read_rows(tmp_path / "b" / "sample_submission.csv")
    assert [r["id"] for r in sample] == [r["id"] for r in read_rows(hidden.solution_path)]
    assert {r["label"] for r in sample} == {hidden.classes[0]}

    folders = images_competition(tmp_path, name="hidden-folders", hidden_test=True)
    done = podium_cmd(env, "kaggle", "export", "--competition", str(folders.root), "--out", str(tmp_path / "c"),
                      "--publish-hidden-test")
    assert done.returncode == 0, done.stdout + done.stderr
    data = tree_of(tmp_path / "c" / "data")
    private = tree_of(folders.root / "private")
    assert data["test.csv"] == private["test.csv"]
    assert {n: b for n, b in data.items() if n.startswith("test/")} == {n: b for n, b in private.items() if n.startswith("test/")}
    assert "solution.csv" not in data and len([n for n in data if n.startswith("test/")]) == 6
    not_hidden = podium_cmd(env, "kaggle", "export", "--competition", str(digits_competition.root), "--out",
                            str(tmp_path / "d"), "--publish-hidden-test")
    assert not_hidden.returncode == 2 and "has no hidden test set" in not_hidden.stderr


def test_submit_and_init_kaggle_on_an_image_folders_competition(tmp_path):
    comp = images_competition(tmp_path)
    solution = load_solution(comp)
    app = make_test_app(tmp_path, comp.root)
    with app.app_context():
        team, token = create_team("Folder Submitters")
        slug = team.slug
    with LiveServer(app) as server:
        env = kaggle_env(server.server.effective_port, tmp_path / "home", username=slug, key=token)
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1"
        bad = write_submission(tmp_path / "bad.csv", solution.ids[:-1], ["ant"] * (len(solution) - 1))
        done = podium_cmd(env, "kaggle", "submit", str(bad), "--slug", "mine", "--competition", str(comp.root))
        assert done.returncode == 2 and "missing" in done.stderr and "Is a directory" not in done.stderr, done.stderr
        good = write_submission(tmp_path / "good.csv", solution.ids, [comp.classes[i % 3] for i in range(len(solution))])
        done = podium_cmd(env, "kaggle", "submit", str(good), "--slug", "mine", "--competition", str(comp.root),
                          "-m", "folders")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Successfully submitted" in done.stdout
        with app.app_context():
            sub = db.session.scalars(sa.select(Submission).where(Submission.team_id == team.id)).one()
            assert sub.status == "scored" and sub.note == "folders"

        # podium init kaggle: the image folders arrive in the zip and are built with podium init images' rules.
        built = podium_cmd(env, "init", "kaggle", "--slug", "mine", "--root", str(tmp_path / "out"), "--name", "again")
        assert built.returncode == 0, built.stdout + built.stderr
        assert "found the CSV + images layout: train.csv (12 rows, columns file,label)" in built.stdout
        again = load_competition(tmp_path / "out" / "again")
        assert again.folders and again.classes == comp.classes


def test_submit_to_kaggle_from_a_hidden_test_copy_says_why_it_cannot_check(tmp_path, digits_competition):
    from harness.build import build_competition

    hidden = build_competition("digits", tmp_path / "comps", name="hidden", seed=5, hidden_test=True)
    team_copy = tmp_path / "team-copy"
    shutil.copytree(hidden.root, team_copy, ignore=shutil.ignore_patterns("private"))
    preds = write_submission(tmp_path / "p.csv", ["a", "b"], ["1", "2"])
    env = kaggle_env(1, tmp_path / "home", username="someone", key="1.key")
    done = podium_cmd(env, "kaggle", "submit", str(preds), "--slug", "hidden", "--competition", str(team_copy))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "keeps its test set hidden" in done.stderr and "sends nothing" in done.stderr
    assert "Traceback" not in done.stderr


# --- podium init kaggle: options it does not take, and nothing to build ---------------------------------

@pytest.mark.parametrize("options, named", [
    (["--hidden-test", "--title", "T"], "--title, --hidden-test do not apply"),
    (["--image-format", "png"], "--image-format does not apply"),
])
def test_init_kaggle_refuses_the_options_it_would_ignore(tmp_path, options, named):
    done = podium_cmd(kaggle_env(1, tmp_path / "home"), "init", "kaggle", "--slug", "digits", "--root",
                      str(tmp_path / "r"), *options)
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr and "takes only --slug, --root, --name, --public-fraction and --seed" in done.stderr
    assert "No Kaggle credentials" not in done.stderr and not (tmp_path / "r").exists()


def test_init_kaggle_says_what_it_found_when_nothing_is_buildable(tmp_path, digits_competition):
    site = tmp_path / "site"
    competition = site / "notes"
    shutil.copytree(digits_competition.root, competition)
    for npz in ("train.npz", "test.npz"):
        (competition / "public" / npz).unlink()
    (competition / "public" / "readme.txt").write_text("nothing to see", encoding="utf-8")
    set_toml(competition / "competition.toml", name='"notes"')
    app = make_test_app(site, competition)
    with app.app_context():
        team, token = create_team("Reader")
    with LiveServer(app) as server:
        env = kaggle_env(server.server.effective_port, tmp_path / "home", username=team.slug, key=token)
        done = podium_cmd(env, "init", "kaggle", "--slug", "notes", "--root", str(tmp_path / "out"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "downloaded 2 files of notes" in done.stderr and "readme.txt, sample_submission.csv" in done.stderr
    assert "None is in a layout podium can build from" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "notes").exists()


def test_kaggle_json_in_kaggle_config_dir_is_found(kaggle_site, tmp_path):
    slug, token = kaggle_site["teams"]["Blue Team"]
    env = kaggle_env(kaggle_site["port"], tmp_path / "home")
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1"
    config_dir = Path(env["KAGGLE_CONFIG_DIR"])
    config_dir.mkdir(parents=True)
    (config_dir / "kaggle.json").write_text(f'{{"username": "{slug}", "key": "{token}"}}', encoding="utf-8")
    (config_dir / "kaggle.json").chmod(0o600)
    done = podium_cmd(env, "kaggle", "board", "--slug", "digits")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Blue Team" in done.stdout and "No Kaggle credentials" not in done.stderr
