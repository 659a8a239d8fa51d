"""Fuzzing CSV validation: random bytes and mutated valid files raise only SubmissionError."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.competition import Solution
from harness.errors import SubmissionError
from harness.sniff import sniff
from harness.submission import parse_csv_submission

CLASSES = ("airplane", "automobile", "bird")
IDS = ("a1", "b2", "c3", "d4", "e5", "f6")
SOLUTION = Solution(ids=IDS, labels=np.array([0, 1, 2, 0, -1, 2]), usage=np.array([0, 1, 1, 0, 2, 1], dtype=np.int8))
VALID = b"id,label\na1,airplane\nb2,1\nc3,bird\nd4,0\ne5,automobile\nf6,2\n"

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(data: bytes) -> None:
    """Either valid predictions or SubmissionError with readable messages; nothing else."""
    try:
        predictions = parse_csv_submission(data, SOLUTION, CLASSES)
    except SubmissionError as exc:
        assert exc.messages and all(isinstance(m, str) and m for m in exc.messages)
        assert len(exc.messages) <= 21
        return
    assert predictions.shape == (len(IDS),)
    assert ((predictions >= 0) & (predictions < len(CLASSES))).all()
    np.testing.assert_array_equal(predictions, oracle(data))


def oracle(data: bytes) -> list[int]:
    """What an accepted file says, read the slow, obvious way (csv module, one dict per row)."""
    import csv
    import io

    names = {c.lower(): i for i, c in enumerate(CLASSES)} | {str(i): i for i in range(len(CLASSES))}
    rows = [r for r in csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")) if r]
    header = [c.strip().lower() for c in rows[0]]
    by_id = {}
    for row in rows[1:]:
        cells = dict(zip(header, (c.strip() for c in row)))
        assert len(row) == 2 and cells["id"] not in by_id
        by_id[cells["id"]] = names[cells["label"].lower()]
    assert set(by_id) == set(IDS)
    return [by_id[i] for i in IDS]


def test_the_valid_file_is_valid():
    np.testing.assert_array_equal(parse_csv_submission(VALID, SOLUTION, CLASSES), [0, 1, 2, 0, 1, 2])
    swapped = b'label,id\r\nbird,f6\r\n0,a1\r\n1,b2\r\nBird,c3\r\n"0", d4 \r\n\r\nautomobile,e5\r\n'
    np.testing.assert_array_equal(parse_csv_submission(swapped, SOLUTION, CLASSES), oracle(swapped))
    plain = b"label,id\nbird,f6\n0,a1\n1,b2\n2,c3\n0,d4\n1,e5\n"  # the fast path, columns swapped
    np.testing.assert_array_equal(parse_csv_submission(plain, SOLUTION, CLASSES), oracle(plain))


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data):
    check(data)


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=500))
def test_random_text(text):
    check(text.encode("utf-8"))


@st.composite
def mutated(draw):
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from([b",", b"\n", b'"', b"\r", b"\x00", b"\xff", b"\xef\xbb\xbf", b"label", b"9"]))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 10))]
        elif op == "duplicate":
            line_start = data.rfind(b"\n", 0, pos) + 1
            line_end = data.find(b"\n", pos)
            data[line_end + 1 : line_end + 1] = data[line_start : line_end + 1] if line_end >= 0 else b""
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_valid_files(data):
    check(data)


@pytest.mark.parametrize(
    "head,kind",
    [
        (VALID[:64], "csv"),
        (b"PK\x03\x04" + b"\x00" * 60, "checkpoint"),
        (b"\x80\x04\x95" + b"\x00" * 61, "checkpoint"),
        ((120).to_bytes(8, "little") + b'{"__metadata__":{}}', "checkpoint"),
        (b"", "csv"),
        (b"\x00" * 64, "csv"),
    ],
)
def test_sniff_decides_by_content(head, kind):
    assert sniff(head) == kind
