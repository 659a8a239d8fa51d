"""Every mistake a participant can make in a CSV gets a message they can act on, and exit code 2."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import time

import numpy as np
import pytest

import podium_cli
from harness.competition import Limits, Solution
from harness.errors import SubmissionError
from harness.scoring import score_file
from harness.submission import parse_csv_submission
from tests.conftest import PODIUM, noisy_predictions


@pytest.fixture(scope="module")
def rows(digits_solution):
    """(id, label) of a decent submission, as strings, in solution order."""
    preds = noisy_predictions(digits_solution, 0.8, seed=1)
    return [(i, str(p)) for i, p in zip(digits_solution.ids, preds)]


def csv_bytes(rows, header="id,label", newline="\n") -> bytes:
    lines = ([header] if header is not None else []) + [f"{a},{b}" for a, b in rows]
    return (newline.join(lines) + newline).encode()


def refusal(tmp_path, competition, data: bytes | None, capsys, path=None) -> list[str]:
    """Run `podium score` on ``data`` (or on ``path`` as it is); assert exit 2 and no traceback; return the messages."""
    if path is None:
        path = tmp_path / "sub.csv"
        path.write_bytes(data)
    code = podium_cli.main(["score", str(path), "--competition", str(competition.root)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return [line.removeprefix("error: ") for line in err.splitlines()]


def one_message(tmp_path, competition, data, capsys) -> str:
    messages = refusal(tmp_path, competition, data, capsys)
    assert len(messages) == 1, messages
    return messages[0]


def test_empty_file(tmp_path, digits_competition, capsys):
    assert "The file is empty" in one_message(tmp_path, digits_competition, b"", capsys)
    assert "The file is empty" in one_message(tmp_path, digits_competition, b"\r\n \n", capsys)


def test_header_only(tmp_path, digits_competition, digits_solution, capsys):
    message = one_message(tmp_path, digits_competition, b"id,label\n", capsys)
    assert "header but no rows" in message and str(len(digits_solution)) in message


@pytest.mark.parametrize(
    "header,expected",
    [
        ("id,lbl", 'the header must be id,label; found "id,lbl" (missing label)'),
        ("image,prediction", "(missing id and label)"),
        ("id,label,confidence", 'extra column(s) "confidence"; keep only id,label'),
    ],
)
def test_wrong_header(tmp_path, digits_competition, rows, header, expected, capsys):
    message = one_message(tmp_path, digits_competition, csv_bytes(rows, header=header), capsys)
    assert message.startswith("line 1: ") and expected in message


def test_missing_header(tmp_path, digits_competition, rows, capsys):
    message = one_message(tmp_path, digits_competition, csv_bytes(rows, header=None), capsys)
    assert "the header is missing" in message and rows[0][0] in message


def test_extra_and_missing_fields_name_the_line(tmp_path, digits_competition, rows, capsys):
    bad = list(rows)
    data = csv_bytes(bad).decode().splitlines()
    data[3] = data[3] + ",0.93"
    data[5] = data[5].split(",")[0]
    messages = refusal(tmp_path, digits_competition, ("\n".join(data) + "\n").encode(), capsys)
    assert "line 4: the row has 3 fields; expected 2 (id,label)." in messages
    assert "line 6: the row has only one field; expected 2 (id,label)." in messages
    assert any("2 of the" in m and "missing" in m for m in messages)


def test_missing_ids_are_counted_with_examples(tmp_path, digits_competition, digits_solution, rows, capsys):
    message = one_message(tmp_path, digits_competition, csv_bytes(rows[:-7]), capsys)
    assert message.startswith(f"7 of the {len(digits_solution)} test ids are missing (for example ")
    assert f'"{rows[-7][0]}"' in message


def test_duplicate_id_names_both_lines(tmp_path, digits_competition, rows, capsys):
    data = csv_bytes(rows + [rows[2]])
    message = one_message(tmp_path, digits_competition, data, capsys)
    assert message == f'line {len(rows) + 2}: id "{rows[2][0]}" appears twice (first on line 4).'


def test_unknown_id(tmp_path, digits_competition, rows, capsys):
    data = csv_bytes(rows[:10] + [("nope", "3")] + rows[10:])
    message = one_message(tmp_path, digits_competition, data, capsys)
    assert message == 'line 12: id "nope" is not a test image id (the ids are in sample_submission.csv).'


@pytest.mark.parametrize(
    "label,expected",
    [
        ("dog", '"dog" is not a class; valid labels are 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 (or their indices 0-9).'),
        ("12", 'label "12" is out of range; class indices run from 0 to 9.'),
        ("-1", 'label "-1" is out of range; class indices run from 0 to 9.'),
        ("2.5", 'label "2.5" is not a whole number'),
        ("3.0", 'label "3.0" is not written as a class index; write it as 3.'),
        ("03", 'label "03" is not written as a class index; write it as 3.'),
        ("", "is empty; give a class name or index."),
    ],
)
def test_bad_labels(tmp_path, digits_competition, rows, label, expected, capsys):
    bad = list(rows)
    bad[4] = (bad[4][0], label)
    message = one_message(tmp_path, digits_competition, csv_bytes(bad), capsys)
    assert message.startswith("line 6: ") and expected in message


def test_not_utf8_names_the_line(tmp_path, digits_competition, rows, capsys):
    data = csv_bytes(rows).replace(rows[8][0].encode(), rows[8][0][:4].encode() + b"\xe9" + rows[8][0][5:].encode())
    message = one_message(tmp_path, digits_competition, data, capsys)
    assert message.startswith("line 10: byte 0xe9 is not valid UTF-8.")


def test_not_utf8_after_a_bom_names_the_line_and_byte(tmp_path, digits_competition, rows, capsys):
    """Regression: with a UTF-8 BOM the error's offset is after the BOM; the line and byte were off."""
    data = csv_bytes(rows).replace(rows[8][0].encode(), rows[8][0][:4].encode() + b"\xe9" + rows[8][0][5:].encode())
    message = one_message(tmp_path, digits_competition, b"\xef\xbb\xbf" + data, capsys)
    assert message.startswith("line 10: byte 0xe9 is not valid UTF-8.")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_says_so(tmp_path, digits_competition, rows, encoding, capsys):
    data = csv_bytes(rows).decode().encode(encoding)
    assert "encoded as UTF-16, not UTF-8" in one_message(tmp_path, digits_competition, data, capsys)


def test_binary_garbage(tmp_path, digits_competition, capsys):
    data = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    data = b"x" + data  # not a checkpoint signature: it goes to CSV validation
    assert "binary data, not a CSV text file" in one_message(tmp_path, digits_competition, data, capsys)


def test_oversized_file_is_refused_before_reading(tmp_path, digits_competition, digits_solution):
    """A 50 GiB sparse file: reading it would take minutes and all memory; refusal is instant."""
    path = tmp_path / "huge.csv"
    with open(path, "wb") as fh:
        fh.write(b"id,label\n")
        fh.truncate(50 * 2**30)
    start = time.perf_counter()
    with pytest.raises(SubmissionError, match=r"50\.0 GiB|51200\.0 MiB"):
        score_file(path, digits_competition, digits_solution)
    assert time.perf_counter() - start < 2.0
    small = dataclasses.replace(digits_competition, limits=Limits(max_csv_bytes=1000))
    path.write_bytes(b"id,label\n" + b"a,1\n" * 300)
    with pytest.raises(SubmissionError, match="the limit for a CSV submission is 0 MiB|limit for a CSV"):
        score_file(path, small, digits_solution)


def test_messages_are_capped_at_twenty(tmp_path, digits_competition, rows, capsys):
    bad = [(i, "cat") for i, _ in rows[:30]] + rows[30:]
    messages = refusal(tmp_path, digits_competition, csv_bytes(bad), capsys)
    assert len(messages) == 21
    assert messages[-1] == "... and 10 more problems not shown."


def test_messages_never_reveal_the_split_or_labels(tmp_path, digits_competition, digits_solution, rows, capsys):
    decoys = [r for r, u in zip(rows, digits_solution.usage) if u == 2]
    scored = [r for r, u in zip(rows, digits_solution.usage) if u != 2]
    # Leaving out only decoys is refused exactly like leaving out scored rows.
    m1 = one_message(tmp_path, digits_competition, csv_bytes(scored), capsys)
    m2 = one_message(tmp_path, digits_competition, csv_bytes(rows[: -len(decoys)]), capsys)
    assert m1.split(" (for example")[0] == m2.split(" (for example")[0]
    for text in (m1, m2):
        assert "Public" not in text and "Private" not in text and "Ignored" not in text and "decoy" not in text


def _score(tmp_path, competition, data: bytes):
    path = tmp_path / "variant.csv"
    path.write_bytes(data)
    return score_file(path, competition).to_dict()


def test_accepted_variants_score_like_the_plain_file(tmp_path, digits_competition, rows):
    plain = _score(tmp_path, digits_competition, csv_bytes(rows))
    shuffled = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    variants = {
        "bom": b"\xef\xbb\xbf" + csv_bytes(rows),
        "crlf": csv_bytes(rows, newline="\r\n"),
        "bom+crlf": b"\xef\xbb\xbf" + csv_bytes(rows, newline="\r\n"),
        "shuffled": csv_bytes(shuffled),
        "quoted": csv_bytes([(f'"{a}"', f'"{b}"') for a, b in rows]),
        "header case and spaces": csv_bytes(rows, header=" ID , Label "),
        "columns swapped": csv_bytes([(b, a) for a, b in rows], header="label,id"),
        "blank lines": csv_bytes(rows).replace(b"\n", b"\n\n", 3) + b"\n\n",
        "spaces around cells": csv_bytes([(f" {a}", f"{b} ") for a, b in rows]),
        "no final newline": csv_bytes(rows).rstrip(b"\n"),
    }
    for name, data in variants.items():
        assert _score(tmp_path, digits_competition, data) == plain, name


def test_class_names_and_indices_are_both_labels():
    solution = Solution(ids=("a", "b", "c", "d"), labels=np.array([0, 1, 2, 1]), usage=np.zeros(4, dtype=np.int8))
    classes = ("cat", "dog", "Bird")
    data = b"id,label\na,cat\nb,1\nc,bird\nd,DOG\n"
    np.testing.assert_array_equal(parse_csv_submission(data, solution, classes), [0, 1, 2, 1])


def test_json_output_and_process_exit_codes(tmp_path, digits_competition, rows):
    good = tmp_path / "good.csv"
    good.write_bytes(csv_bytes(rows))
    out = subprocess.run([*PODIUM, "score", str(good), "--competition", str(digits_competition.root), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    for split in ("public", "private", "all"):
        for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "per_class", "confusion_matrix", "ci"):
            assert key in doc[split]
        assert doc[split]["ci"][0] <= doc[split]["accuracy"] <= doc[split]["ci"][1]
    assert doc["public"]["n"] + doc["private"]["n"] == doc["all"]["n"]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"id\n")
    out = subprocess.run([*PODIUM, "score", str(bad), "--competition", str(digits_competition.root)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("error: line 1:") and "Traceback" not in out.stderr


def test_scoring_a_csv_never_imports_torch_or_sklearn(tmp_path, digits_competition, rows):
    good = tmp_path / "good.csv"
    good.write_bytes(csv_bytes(rows))
    code = (
        "import sys, podium_cli\n"
        f"rc = podium_cli.main(['score', {str(good)!r}, '--competition', {str(digits_competition.root)!r}])\n"
        "heavy = [m for m in ('torch', 'sklearn', 'flask', 'pandas', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy, rc)\n"
    )
    out = subprocess.run([PODIUM[0], "-c", code], capture_output=True, text=True)
    assert "HEAVY [] 0" in out.stdout, out.stdout + out.stderr


def test_score_file_reads_the_solution_once(tmp_path, digits_competition, rows, monkeypatch):
    import harness.scoring

    calls = []
    real = harness.scoring.load_solution
    monkeypatch.setattr(harness.scoring, "load_solution", lambda c: calls.append(c) or real(c))
    path = tmp_path / "sub.csv"
    path.write_bytes(csv_bytes(rows))
    assert score_file(path, digits_competition).public.n > 0
    assert len(calls) == 1


def test_unreadable_file_is_a_user_error(tmp_path, digits_competition, capsys):
    """Regression: an OSError other than 'missing' or 'a folder' (here: a name too long) gave a traceback."""
    path = tmp_path / ("x" * 300)
    messages = refusal(tmp_path, digits_competition, None, capsys, path=path)
    assert messages == [f"{path} cannot be read (File name too long)."]


def test_a_bare_carriage_return_in_the_header_is_read_as_the_csv_module_reads_it(digits_competition, digits_solution):
    # Found by the fuzz test (tests/test_fuzz_submission.py): the fast path took b"id\r,label" for the
    # header id,label, while the csv module, and so the explained path, ends the line at the \r.
    ids = digits_solution.ids
    body = "".join(f"{i},0\n" for i in ids)
    with pytest.raises(SubmissionError):
        parse_csv_submission(("id\r,label\n" + body).encode(), digits_solution, digits_competition.classes)
    accepted = parse_csv_submission(("id,label\r\n" + body).encode(), digits_solution, digits_competition.classes)
    assert len(accepted) == len(ids)
