"""Text inputs that are not UTF-8 (embed input, an import source, a caption corpus) give one clear error naming the
line of the first bad byte; a byte-order mark from a spreadsheet export is accepted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.data.files import load_captions
from llmvem.describe.imported import read_text_table
from llmvem.errors import DataError

runner = CliRunner()
BAD = "not UTF-8 text \\(byte 0xff on line 2\\)"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("c.txt", b"a cat\n\xff\xfe a dog\n"),
        ("c.jsonl", b'{"id": "a", "text": "x"}\n{"id": "b", "text": "y \xff"}\n'),
        ("c.csv", b"id,text\na,y \xff\n"),
    ],
)
def test_caption_corpus_not_utf8(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=f"caption corpus .*{name}: {BAD}"):
        load_captions(tmp_path / name)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("d.jsonl", b'{"image": "a", "text": "x"}\n{"image": "b", "text": "y \xff"}\n'),
        ("d.csv", b"image,text\na,y \xff\n"),
        ("d.json", b'{"annotations": [\n{"image_id": 1, "caption": "\xff"}]}'),
    ],
)
def test_descriptions_file_not_utf8(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=f"descriptions file .*{name}: {BAD}"):
        read_text_table(tmp_path / name)


def test_bom_csv_is_read(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes("\ufeffimage,text\na,un café\n".encode())
    df = read_text_table(tmp_path / "d.csv")
    assert list(df["image"]) == ["a"] and list(df["text"]) == ["un café"]


def test_cli_embed_and_import_refuse_non_utf8(tmp_path: Path) -> None:
    src = tmp_path / "d.jsonl"
    src.write_bytes(b'{"image": "img", "text": "ok"}\n{"image": "b", "text": "\xff"}\n')
    res = runner.invoke(app, ["embed", str(src), "--encoder", "glove", "-o", str(tmp_path / "e.npy")])
    assert res.exit_code == 2 and "not UTF-8 text" in " ".join(res.output.split())
    assert not (tmp_path / "e.npy").exists()
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "imgs" / "img.png")
    res = runner.invoke(app, ["describe", str(tmp_path / "imgs"), "--backend", "import", "--source", str(src),
                              "--cache-dir", str(tmp_path / "c")])  # fmt: skip
    assert res.exit_code == 2 and "not UTF-8 text" in " ".join(res.output.split()), res.output
