"""A local survey folder that does not exist: the error suggests the near name beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hipsml.cli import main
from hipsml.errors import SurveyNotFoundError
from hipsml.hips import open_survey


@pytest.fixture
def sky(tmp_path: Path) -> Path:
    for name in ("radio", "optical", ".cache"):
        (tmp_path / "sky" / name).mkdir(parents=True)
    (tmp_path / "sky" / "radoi.txt").write_text("a file, not a folder")
    return tmp_path / "sky"


def test_a_misspelt_survey_folder_suggests_the_near_one(sky: Path) -> None:
    with pytest.raises(SurveyNotFoundError) as info:
        open_survey(sky / "radoi")
    assert str(info.value) == f"no HiPS directory at {sky / 'radoi'}; did you mean {sky / 'radio'}?"
    with pytest.raises(SurveyNotFoundError, match=r"did you mean .*/sky/optical\?$"):
        open_survey(f"file://{sky}/Optical")  # another case, through a file:// URL


def test_nothing_near_lists_the_folders_or_the_missing_parent(sky: Path) -> None:
    with pytest.raises(SurveyNotFoundError) as info:
        open_survey(sky / "xray")
    assert str(info.value) == f"no HiPS directory at {sky / 'xray'} ({sky} holds the folders optical, radio)"
    with pytest.raises(SurveyNotFoundError) as info:
        open_survey(sky / "nope" / "radio")
    assert str(info.value) == f"no HiPS directory at {sky / 'nope' / 'radio'} (nor a folder {sky / 'nope'})"


def test_the_cli_prints_the_hint_on_one_line(sky: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["survey", "info", str(sky / "radoi")]) == 2
    assert (
        capsys.readouterr().err
        == f"hipsml: error: no HiPS directory at {sky / 'radoi'}; did you mean {sky / 'radio'}?\n"
    )
