"""The painter after a failover: the page sends a file name of another replica's cache."""

from __future__ import annotations

from pathlib import Path

from gradio.components.image_editor import EditorData
from gradio.data_classes import FileData
from PIL import Image

from chat.media.images import read_region
from chat.ui.events import _painted
from chat.ui.layout import _without_files_of_other_replicas


def _stroke(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste((255, 0, 255, 255), (8, 8, 24, 24))
    layer.save(path)
    return path


def test_files_this_replica_does_not_hold_are_left_out_and_the_strokes_kept(tmp_path: Path) -> None:
    seen: list[EditorData] = []
    preprocess = _without_files_of_other_replicas(lambda payload: seen.append(payload) or payload)
    stroke = _stroke(tmp_path / "layer.png")
    elsewhere = FileData(path=str(tmp_path / "other-replica" / "latest.png"))

    preprocess(
        EditorData(background=elsewhere, layers=[FileData(path=str(stroke)), elsewhere], composite=elsewhere)
    )

    [payload] = seen
    assert payload.background is None and payload.composite is None
    assert [layer.path for layer in payload.layers] == [str(stroke)]


def test_a_payload_whose_files_are_here_is_passed_on_unchanged(tmp_path: Path) -> None:
    stroke = FileData(path=str(_stroke(tmp_path / "layer.png")))
    payload = EditorData(background=stroke, layers=[stroke], composite=stroke)

    assert _without_files_of_other_replicas(lambda given: given)(payload) == payload
    assert _without_files_of_other_replicas(lambda given: given)(None) is None


def test_strokes_without_their_background_still_give_the_painted_region(tmp_path: Path) -> None:
    with Image.open(_stroke(tmp_path / "layer.png")) as layer:
        painted = _painted({"background": None, "layers": [layer], "composite": None})

    assert painted is not None
    region = read_region(painted)
    assert region.size == (64, 48) and region.getbbox() == (8, 8, 24, 24)


def test_nothing_painted_is_no_region() -> None:
    assert _painted(None) is None
    assert _painted({"background": None, "layers": [], "composite": None}) is None
    blank = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    assert _painted({"background": blank, "layers": [blank], "composite": blank}) is None
