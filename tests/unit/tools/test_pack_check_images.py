"""``policies check`` for a model that takes images: what one image takes in the engine, and
each policy's room for content beside one image and beside media.max_frames frames."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from worker.config import load_settings
from worker.tools.pack_check import ImageLayout, check_pack, image_layout

POLICY = "---\nid: fruit\n---\nFlag content that mentions any of: apple, mango.\n"


@pytest.fixture(scope="module")
def seeing(tmp_path_factory) -> Path:
    from worker.testing.seeing import build_seeing_model

    return build_seeing_model(tmp_path_factory.mktemp("seeing") / "m")


def settings(tmp_path: Path, model: Path, **media):
    (tmp_path / "fruit.md").write_text(POLICY)
    return load_settings(engine={"model": str(model)}, policies={"dir": str(tmp_path)}, media=media)


def test_each_policys_room_beside_one_image_and_the_most_frames(seeing, tmp_path) -> None:
    lines: list[str] = []
    tokenizer = AutoTokenizer.from_pretrained(str(seeing))
    layout = ImageLayout(tokens_each=4, counts=(1, 8))
    tally = check_pack(settings(tmp_path, seeing), tokenizer, 200, lines.append, None, layout)
    assert tally.errors == 0
    assert lines[1] == (
        "images: 4 tokens each in the engine; room for content shown beside 1 and 8 "
        "(media.max_frames)"
    )
    [loaded] = [line for line in lines if line.startswith("loaded")]
    text_room = int(loaded.split(" left for content")[0].rsplit(" ", 1)[1])
    # One placeholder and 4 tokens per image, as assemble() counts them.
    assert f"beside 1 image {text_room - 5} left" in loaded
    assert f"beside 8 images {text_room - 40} left" in loaded


def test_frames_that_leave_no_room_say_so(seeing, tmp_path) -> None:
    lines: list[str] = []
    tokenizer = AutoTokenizer.from_pretrained(str(seeing))
    layout = ImageLayout(tokens_each=60, counts=(1, 8))
    check_pack(settings(tmp_path, seeing), tokenizer, 200, lines.append, None, layout)
    [loaded] = [line for line in lines if line.startswith("loaded")]
    assert "beside 8 images no room left" in loaded


def test_the_layout_is_the_engines_count_from_the_model_files(seeing, tmp_path, test_model):
    layout = image_layout(settings(tmp_path, seeing, max_frames=6), str(seeing))
    assert layout == ImageLayout(tokens_each=4, counts=(1, 6))
    assert image_layout(settings(tmp_path, seeing, enabled=False), str(seeing)) is None
    assert image_layout(settings(tmp_path, test_model), str(test_model)) is None  # text only
    assert image_layout(settings(tmp_path, seeing), str(tmp_path / "nothing")) is None


def test_a_vision_model_whose_tokens_cannot_be_counted_says_why(seeing, tmp_path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(seeing, broken)
    (broken / "preprocessor_config.json").write_text("{not json")
    layout = image_layout(settings(tmp_path, seeing), str(broken))
    assert isinstance(layout, str) and "cannot count the tokens of an image" in layout


def test_the_prompt_command_says_what_each_placeholder_becomes(seeing, tmp_path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "fruit.md").write_text(POLICY)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    args = ["a pear", "--policy", "fruit", "--policies", str(tmp_path), "--model", str(seeing)]
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "prompt", *args, "--images", "2"],
        capture_output=True, text=True, env=clean, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "a pear<image><image><end_of_turn>" in result.stdout
    assert "2 image placeholder(s), each up to 4 tokens in the engine" in result.stderr
