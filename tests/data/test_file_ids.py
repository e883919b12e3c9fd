"""One id check for every file kind (matrices and RDMs, .npy + .ids.txt or .npz), ids that cannot be written one
per line, and archives that are not archives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.data.files import load_brain, load_matrix, load_rdms, write_ids
from llmvem.errors import DataError
from llmvem.text.multi import TextEmbeddings

runner = CliRunner()


def _rdm(n: int) -> np.ndarray:
    a = np.random.default_rng(0).random((n, n))
    r = a + a.T
    np.fill_diagonal(r, 0)
    return r


def test_duplicate_ids_in_rdm_files_are_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "r.npy", _rdm(4))
    (tmp_path / "r.ids.txt").write_text("a\nb\nc\na\n")
    with pytest.raises(DataError, match=r"1 stimulus id\(s\) appear more than once in .*r.ids.txt: \['a'\]"):
        load_rdms(str(tmp_path / "r.npy"))
    np.savez(tmp_path / "s.npz", rdms=_rdm(4), stimulus_ids=np.array(["a", "b", "b", "c"]))
    with pytest.raises(DataError, match=r"appear more than once in its 'stimulus_ids' array: \['b'\]"):
        load_rdms(str(tmp_path / "s.npz"))
    from llmvem.data.brain import RDMSet

    with pytest.raises(DataError, match="duplicate stimulus ids"):
        RDMSet(_rdm(3), ["x", "y", "x"], ["s01"])


def test_duplicate_ids_in_npz_matrix_are_rejected(tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", values=np.zeros((3, 2)), ids=np.array(["a", "b", "a"]))
    with pytest.raises(DataError, match="appear more than once in its 'ids' array"):
        load_matrix(tmp_path / "m.npz")
    np.save(tmp_path / "m.npy", np.zeros((3, 2)))
    (tmp_path / "m.ids.txt").write_bytes(b"a\nb\n\xff\xfe\n")
    with pytest.raises(DataError, match="not UTF-8 text"):
        load_matrix(tmp_path / "m.npy")


def test_not_an_archive_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "zip.npz").write_bytes(b"PK\x03\x04" + b"\0" * 40)  # a zip header, then garbage
    with pytest.raises(DataError, match=r"not a valid \.npz"):
        load_brain(tmp_path / "zip.npz")
    (tmp_path / "txt.npz").write_text("subject,voxel\n1,2\n")
    with pytest.raises(DataError, match=r"not a NumPy \.npy/\.npz file"):
        load_brain(tmp_path / "txt.npz")
    (tmp_path / "zip2.npz").write_bytes((tmp_path / "zip.npz").read_bytes())
    with pytest.raises(DataError, match=r"not a valid \.npz"):
        load_rdms(str(tmp_path / "zip2.npz"))
    with pytest.raises(DataError, match=r"not a valid \.npz"):
        load_matrix(tmp_path / "zip2.npz")


@pytest.mark.parametrize("bad", ["a\nb", "x\r", " lead", "", "trail "])
def test_ids_that_do_not_round_trip_are_refused_before_writing(tmp_path: Path, bad: str) -> None:
    with pytest.raises(DataError, match="cannot be written one per line"):
        write_ids(tmp_path / "x.ids.txt", ["ok", bad], "test")
    emb = TextEmbeddings(values=np.zeros((2, 3), np.float32), ids=["ok", bad], encoder="e")
    with pytest.raises(DataError, match="cannot be written one per line"):
        emb.save(tmp_path / "e.npy")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_features_refuses_a_file_name_with_a_line_break(tmp_path: Path) -> None:
    from PIL import Image

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name in ("a.png", "b\nc.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(imgs / name)
    out = tmp_path / "f.npy"
    res = runner.invoke(app, ["features", str(imgs), "--out", str(out), "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 2, res.output
    assert "cannot be written one per line" in " ".join(res.output.split())
    assert not out.exists() and not (tmp_path / "c").exists()


def test_a_similarity_matrix_is_not_taken_for_an_rdm(tmp_path: Path) -> None:
    x = np.random.default_rng(3).standard_normal((5, 20))
    np.save(tmp_path / "sim.npy", np.corrcoef(x))  # diagonal 1, symmetric: passes every RDM check but the sign
    (tmp_path / "sim.ids.txt").write_text("a\nb\nc\nd\ne\n")
    with pytest.raises(DataError, match=r"this is a similarity matrix .* \(1 - r\)"):
        load_rdms(str(tmp_path / "sim.npy"))
    np.save(tmp_path / "sim.npy", 1 - np.corrcoef(x))
    assert load_rdms(str(tmp_path / "sim.npy"))[1].n_stimuli == 5
