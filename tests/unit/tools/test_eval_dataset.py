"""Reading golden rows and contrastive pairs: good rows kept, bad ones named by line."""

from pathlib import Path

import pytest

from worker.tools.evaluate.dataset import (
    BadRow,
    DatasetError,
    Pair,
    Row,
    parse_pairs,
    parse_rows,
    read_lines,
)

KNOWN = {"fruit", "nature"}

GOLDEN = [
    '{"id": "a", "content": "an apple", "label": 1}',  # 1
    "",  # 2: blank, skipped
    '{"id": "b", "content": "by the river", "label": 0, "policy": "nature"}',  # 3
    "{not json",  # 4
    '{"id": "c", "label": 1}',  # 5: no content
    '{"id": "d", "content": "x", "label": 2}',  # 6
    '{"id": "e", "content": "x", "label": true}',  # 7
    '{"id": "f", "content": "x", "label": 1, "policy": "weather"}',  # 8
    '["id", "content"]',  # 9
    '{"id": 7, "content": "numbered", "label": 0}',  # 10: integer id is fine
    '{"id": "a", "content": "again", "label": 0}',  # 11: duplicate of line 1
    '{"id": "a", "content": "same id, other policy", "label": 0, "policy": "nature"}',  # 12
    '{"content": "   ", "label": "1"}',  # 13: several problems at once
    '{"id": "g", "content": "x", "label": 1.0}',  # 14
]


def test_golden_rows_and_bad_rows_with_line_numbers():
    rows, bad = parse_rows(GOLDEN, KNOWN, "fruit", "golden.jsonl")
    assert rows == [
        Row(1, "a", "an apple", 1, "fruit"),
        Row(3, "b", "by the river", 0, "nature"),
        Row(10, "7", "numbered", 0, "fruit"),
        Row(12, "a", "same id, other policy", 0, "nature"),
    ]
    assert [b.line for b in bad] == [4, 5, 6, 7, 8, 9, 11, 13, 14]
    reasons = {b.line: b.reason for b in bad}
    assert reasons[4].startswith("invalid JSON")
    assert reasons[5] == "missing field(s): content (or media)"
    assert reasons[6] == "label must be 0 or 1, got 2"
    assert reasons[7] == "label must be 0 or 1, got true"
    assert reasons[8] == "unknown policy 'weather' in policy"
    assert reasons[9] == "a row must be a JSON object, got an array"
    assert reasons[11] == "duplicate id 'a' for policy 'fruit' (first on line 1)"
    assert reasons[13] == (
        'missing field(s): id; content must be a non-empty string; label must be 0 or 1, got "1"'
    )
    assert reasons[14] == "label must be 0 or 1, got 1.0"
    assert str(bad[0]).startswith("golden.jsonl:4: invalid JSON")


def test_rows_with_media_paths_relative_to_the_dataset_and_urls(tmp_path):
    from worker.tools.evaluate.media_rows import MediaSpec

    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "red.png").write_bytes(b"png bytes")
    lines = [
        '{"id": "a", "media": [{"type": "image", "path": "img/red.png"}], "label": 1}',
        '{"id": "b", "content": "look", "label": 0,'
        ' "media": [{"type": "video", "url": "https://cdn.example/v.mp4", "mime": "video/mp4"}]}',
        '{"id": "c", "media": [{"type": "image", "path": "img/gone.png"}], "label": 1}',
        '{"id": "d", "media": [{"type": "audio", "url": "x"}], "label": 1}',
        '{"id": "e", "media": [{"type": "image", "path": "p", "url": "u"}], "label": 1}',
        '{"id": "f", "media": [], "label": 1}',
        '{"id": "g", "media": [{"type": "image", "path": "img/red.png", "size": 3}], "label": 0}',
    ]
    rows, bad = parse_rows(lines, KNOWN, "fruit", "g.jsonl", tmp_path)
    red = MediaSpec("image", path=tmp_path / "img" / "red.png")
    video = MediaSpec("video", url="https://cdn.example/v.mp4", mime="video/mp4")
    assert rows == [
        Row(1, "a", None, 1, "fruit", (red,)),
        Row(2, "b", "look", 0, "fruit", (video,)),
    ]
    assert rows[0].shown == "[image: red.png]"
    assert rows[1].shown == "look [video: https://cdn.example/v.mp4]"
    assert red.ref().data == "cG5nIGJ5dGVz"  # the file's bytes, inline as an event has them
    assert {b.line: b.reason for b in bad} == {
        3: f"media[0]: no such file: {tmp_path / 'img' / 'gone.png'}",
        4: "media[0]: type must be one of image, video",
        5: "media[0]: give exactly one of path and url, a non-empty string",
        6: "media must be a non-empty list of objects",
        7: "media[0]: unknown field(s): size",
    }


def test_rows_without_policy_need_a_default():
    rows, bad = parse_rows(['{"id": "a", "content": "x", "label": 1}'], KNOWN, None, "g")
    assert rows == []
    assert bad == [BadRow("g", 1, "no policy: give the row a 'policy' field or pass --policy")]


def test_pairs():
    lines = [
        '{"content": "an apple by the river", "policy_pos": "fruit", "policy_neg": "weather"}',
        '{"id": "p2", "content": "mango", "policy_pos": "fruit", "policy_neg": "nature"}',
        '{"content": "x", "policy_pos": "fruit", "policy_neg": "fruit"}',
        '{"content": "x", "policy_pos": "fruit"}',
        '{"content": "apple", "policy_pos": "fruit", "policy_neg": "nature"}',
    ]
    pairs, bad = parse_pairs(lines, KNOWN, "pairs.jsonl")
    assert pairs == [
        Pair(2, "p2", "mango", "fruit", "nature"),
        Pair(5, "line-5", "apple", "fruit", "nature"),
    ]
    assert bad == [
        BadRow("pairs.jsonl", 1, "unknown policy 'weather' in policy_neg"),
        BadRow("pairs.jsonl", 3, "policy_pos and policy_neg are the same policy"),
        BadRow("pairs.jsonl", 4, "missing field(s): policy_neg"),
    ]


def test_read_lines_strips_a_byte_order_mark(tmp_path: Path):
    path = tmp_path / "golden.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "content": "x", "label": 1}\n\xff\xfe\n')
    rows, bad = parse_rows(read_lines(path), KNOWN, "fruit", "g")
    assert [r.id for r in rows] == ["a"]
    assert [b.line for b in bad] == [2] and bad[0].reason.startswith("invalid JSON")


def test_missing_file_is_a_dataset_error(tmp_path: Path):
    with pytest.raises(DatasetError, match="cannot read"):
        read_lines(tmp_path / "absent.jsonl")
