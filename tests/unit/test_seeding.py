"""The quick ``steamprice seed`` (``steamprice.seeding``): what it takes on, what it leaves to the
Faust command line, and that it knows the pipeline's topics as ``steamprice.topics`` declares
them. (It sends to the real broker in ``tests/integration/test_seed_intake.py``.)"""

from __future__ import annotations

import pytest

from steamprice.app import settings
from steamprice.seeding import TOPIC_NAMES, seed_arguments
from steamprice.topics import ALL_TOPICS, app_ids_topic


def test_it_knows_every_topic_of_the_pipeline_and_the_seed_topic_first() -> None:
    assert {settings.topic_name(name) for name in TOPIC_NAMES} == {
        t.get_topic_name() for t in ALL_TOPICS
    }
    assert settings.topic_name(TOPIC_NAMES[0]) == app_ids_topic.get_topic_name()


@pytest.mark.parametrize(
    ("argv", "parsed"),
    [
        (["730", "570"], (["730", "570"], None)),
        (["--file", "ids.txt"], ([], "ids.txt")),
        (["--file=ids.txt", "730"], (["730"], "ids.txt")),
        (["730", "--file", "-"], (["730"], "-")),
        (["-"], (["-"], None)),  # not an option: an app id the parser refuses, as Faust's does
    ],
)
def test_ids_and_a_file_take_the_quick_path(
    argv: list[str], parsed: tuple[list[str], str | None]
) -> None:
    assert seed_arguments(argv) == parsed


@pytest.mark.parametrize(
    "argv",
    [
        ["--all"],
        ["730", "--all"],
        ["--help"],
        ["-h"],
        ["--apps", "1,2"],  # Faust's usage error, not ours
        ["--file"],  # no path: Faust's usage error
        ["--file", "a", "--file", "b"],
        ["-A", "steamprice", "730"],
    ],
)
def test_anything_else_is_left_to_the_faust_command_line(argv: list[str]) -> None:
    assert seed_arguments(argv) is None
