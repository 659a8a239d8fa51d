"""harness.pages: the Evaluation, Rules and Data pages' content, from the competition alone."""
from __future__ import annotations

import hashlib
import os

from harness.build import build_competition
from harness.competition import load_competition
from harness.pages import evaluation_markdown, public_files, rules_markdown


def test_evaluation_follows_competition_toml(tmp_path):
    comp = build_competition("digits", tmp_path, name="d", public_fraction=0.25)
    text = evaluation_markdown(comp)
    assert "**accuracy**" in text and "25 %" in text and "75 %" in text and "95 %" in text
    sample = comp.sample_submission_path.read_text().splitlines()
    assert "\n".join(sample[:4]) in text  # the sample's first lines, verbatim
    assert "`num_classes` must be 10" in text and "default 32" in text and "900 seconds" in text
    toml = comp.root / "competition.toml"
    toml.write_text(
        toml.read_text().replace('primary_metric = "accuracy"', 'primary_metric = "f1_macro"')
        .replace("max_csv_mb = 20", "max_csv_mb = 3")
        .replace("# allowed_archs = [", "allowed_archs = [").replace('"timm/*"]   #', '"timm/*"]\n#'),
        encoding="utf-8",
    )
    text = evaluation_markdown(load_competition(comp.root))
    assert "**macro-averaged F1**" in text and "**accuracy**" not in text
    assert "3 MiB" in text and "`torchvision/resnet50`, `timm/*`" in text


def test_hidden_test_pages_say_checkpoints_only(tmp_path):
    comp = build_competition("digits", tmp_path, name="d", hidden_test=True)
    text = evaluation_markdown(comp)
    assert "hidden" in text and "CSVs are refused" in text and "id,label" not in text
    assert "CSVs are refused" in rules_markdown(comp)


def test_rules_follow_competition_toml(tmp_path):
    comp = build_competition("digits", tmp_path, name="d")
    text = rules_markdown(comp)
    assert "**5** times per UTC day" in text and "up to **2** final submissions" in text and "no deadline" in text
    toml = comp.root / "competition.toml"
    toml.write_text(
        toml.read_text().replace("daily_limit = 5", "daily_limit = 1")
        .replace("# deadline = 2026-12-31T23:59:00Z", "deadline = 2027-03-01T12:00:00Z")
        .replace('title = "', 'title = "*Bold* <b>x</b> '),
        encoding="utf-8",
    )
    text = rules_markdown(load_competition(comp.root))
    assert "**1** time per UTC day" in text and "2027-03-01 12:00 UTC" in text
    assert "\\*Bold\\* \\<b\\>x\\</b\\>" in text  # the organizer's title is literal text, not markup


def test_public_files_are_hashed_and_private_never_listed(tmp_path):
    comp = build_competition("digits", tmp_path, name="d")
    os.symlink(comp.root / "private" / "solution.csv", comp.root / "public" / "answers.csv")
    (comp.root / "public" / ".hidden").write_text("x")
    files = public_files(comp)
    assert [f.path for f in files] == ["sample_submission.csv", "test.npz", "train.npz"]
    for f in files:
        data = (comp.root / "public" / f.path).read_bytes()
        assert f.size == len(data) and f.sha256 == hashlib.sha256(data).hexdigest()
    cache: dict = {}
    assert public_files(comp, cache) == files and len(cache) == 3
    (comp.root / "public" / "sample_submission.csv").write_text("id,label\n")
    again = {f.path: f for f in public_files(comp, cache)}
    assert again["sample_submission.csv"].sha256 == hashlib.sha256(b"id,label\n").hexdigest()


def test_init_writes_a_real_description_and_keeps_the_organizers(tmp_path):
    from harness.datasets import CIFAR10_CLASSES
    from harness.description import description_markdown

    text = description_markdown("cifar10", "CIFAR-10 image classification", CIFAR10_CLASSES,
                                {"train_images": 50000, "test_images": 10000, "image_size": 32, "hidden_test": True})
    assert text.startswith("# CIFAR-10 image classification") and "airplane, automobile" in text
    assert "50,000 training images and 10,000 test images, 32 x 32" in text and "Krizhevsky" in text
    assert "**hidden**" in text and "<" not in text  # a finished page, no skeleton placeholders
    comp = build_competition("digits", tmp_path, name="d")
    digits = comp.description_path.read_text()
    assert digits.startswith("# Handwritten digits") and "1,797" in digits and "<" not in digits
    comp.description_path.write_text("# Ours\n", encoding="utf-8")
    build_competition("digits", tmp_path, name="d", seed=3)  # a rebuild keeps the organizer's page
    assert comp.description_path.read_text() == "# Ours\n"


def test_the_images_skeleton_renders_cleanly_and_says_what_the_board_does(tmp_path):
    from harness.description import description_markdown
    from leaderboard.rendering import render_markdown

    text = description_markdown("images", "Garden birds", ("robin", "wren"),
                                {"train_images": 50, "test_images": 20, "image_size": 64, "hidden_test": False})
    assert "<!--" not in text and "removed" not in text  # no HTML comment: it would show as text
    html = render_markdown(text)
    assert "&lt;!--" not in html and "<!--" not in html
    note = html[html.index("<blockquote>"):html.index("</blockquote>")]
    assert "replace each part in angle brackets" in note and "shown as text, never run" in note
    assert "<li><code>robin</code>: &lt;what this class is&gt;</li>" in html  # placeholders read as placeholders
    assert "50 training images and 20 test images, 64 x 64 pixels" in html


def test_the_listing_written_at_init_is_trusted_only_for_unchanged_files(tmp_path, monkeypatch):
    from harness import pages
    from harness.pages import LISTING_FILE, public_listing, read_listing, write_listing

    comp = build_competition("digits", tmp_path, name="d")
    truth = public_files(comp)
    write_listing(comp.root)  # no `known`: every public file hashed here
    written, seeded = read_listing(comp.root)
    assert seeded == {f.path: (f.size, f.sha256) for f in truth} and written > 0
    hashed = []
    real = pages.sha256_file
    monkeypatch.setattr(pages, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    assert list(public_listing(comp, {}).files) == truth and hashed == []  # all from the listing

    # A listing that lies (a wrong digest) is believed only for a file no newer than itself ...
    listing = comp.root / LISTING_FILE
    lie = listing.read_text().replace(seeded["train.npz"][1], "0" * 64)
    listing.write_text(lie)
    train = comp.root / "public" / "train.npz"
    stat = train.stat()
    os.utime(listing, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9))  # ... and this one is older than train.npz
    found = {f.path: f for f in public_listing(comp, {}).files}
    assert found["train.npz"].sha256 == seeded["train.npz"][1] and "train.npz" in hashed
    listing.write_bytes(b"\xff\xfe not a listing")  # damaged: everything hashed, nothing wrong
    hashed.clear()
    assert list(public_listing(comp, {}).files) == truth and sorted(hashed) == sorted(f.path for f in truth)
