"""NSD stimuli straight from nsd_stimuli.hdf5, on fakes in the real layout.

The fake brick is the real dataset: ``imgBrick`` of (73000, 425, 425, 3) uint8, chunked, in
``<root>/nsddata_stimuli/stimuli/nsd/``. Only the rows a test uses are written (an unwritten chunk takes no space and
reads as zeros), so the file stays a few MB. Each written row holds its own random image, so a row read one off is
caught. The design file has the real keys and shapes: masterordering (1, 30000), subjectim (8, 10000), sharedix
(1, 1000), 1-based.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from llmvem.data import nsd_ids
from llmvem.data.nsd import NSDDesign
from llmvem.data.nsd_stimuli import (
    DESIGN_FILE,
    STIMULI_FILE,
    NSDStimulusFile,
    nsd_stimuli,
    stimuli_from_path,
)
from llmvem.data.stimuli import StimulusSet
from llmvem.errors import DataError, DatasetNotFoundError
from llmvem.hashing import hash_array

SHAPE = (73_000, 425, 425, 3)
ROWS = (0, 1, 12, 2950, 72_999)  # rows written in every fake brick


def row_pixels(row: int) -> np.ndarray:
    """The (425, 425, 3) uint8 image planted in ``row``."""
    return np.random.default_rng(1000 + row).integers(0, 256, SHAPE[1:], dtype=np.uint8)


def write_brick(
    path: Path, rows: tuple[int, ...] = ROWS, chunks: tuple[int, ...] = (1, 425, 425, 3), **dataset: object
) -> Path:
    """An ``imgBrick`` like NSD's with ``rows`` written (``dataset`` overrides shape, dtype or name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name = str(dataset.pop("name", "imgBrick"))
    shape = dataset.pop("shape", SHAPE)
    dtype = dataset.pop("dtype", np.uint8)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks)
        for r in rows:
            ds[r] = row_pixels(r)
    return path


def write_design(root: Path, seed: int = 0, n_shared515: int = 4) -> NSDDesign:
    """``nsd_expdesign.mat`` with the real keys and shapes; ``n_shared515`` of the shared images are seen three times
    within every subject's completed sessions (the first 22,500 trials), the others have a repeat after them."""
    rng = np.random.default_rng(seed)
    held = [1, 13, 2951]  # shared images the fake brick holds
    pick = rng.choice(np.setdiff1d(np.arange(1, 73_001), held), 997, replace=False)
    shared = np.sort(np.concatenate([held, pick]))
    others = np.setdiff1d(np.arange(1, 73_001), shared)
    subjectim = np.zeros((8, 10_000), dtype=np.int64)
    for s in range(8):
        subjectim[s] = np.concatenate([shared, rng.choice(others, 9000, replace=False)])
    keep = np.arange(1, n_shared515 + 1)  # 10k indices of the shared images that stay in shared515
    late = np.arange(n_shared515 + 1, 1001)  # one repeat of each other shared image after trial 22,500
    counts = np.full(10_000, 3)
    counts[keep - 1] -= 3
    counts[late - 1] -= 1
    pool = rng.permutation(np.repeat(np.arange(1, 10_001), counts))
    n_head = 22_500 - 3 * len(keep)
    head = rng.permutation(np.concatenate([np.repeat(keep, 3), pool[:n_head]]))
    tail = rng.permutation(np.concatenate([pool[n_head:], late]))
    masterordering = np.concatenate([head, tail])
    assert masterordering.shape == (30_000,) and np.bincount(masterordering)[1:].tolist() == [3] * 10_000
    d = root / DESIGN_FILE
    d.parent.mkdir(parents=True, exist_ok=True)
    savemat(d, {"masterordering": masterordering[None], "subjectim": subjectim, "sharedix": shared[None]})
    return NSDDesign(masterordering, subjectim, shared)


@pytest.fixture(scope="module")
def nsd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nsd")
    write_brick(root / STIMULI_FILE)
    write_design(root)
    return root


@pytest.fixture(scope="module")
def brick(nsd_root: Path) -> Path:
    return nsd_root / STIMULI_FILE


# ------------------------------------------------------------------------------------------ rows and ids
@pytest.mark.parametrize("chunks", [(1, 425, 425, 3), (4, 107, 107, 3)], ids=["one-image-chunks", "tiled-chunks"])
def test_row_i_is_image_nsd_i_plus_1(tmp_path: Path, chunks: tuple[int, ...]) -> None:
    path = write_brick(tmp_path / STIMULI_FILE, chunks=chunks)
    stim = nsd_stimuli(path)
    assert len(stim) == 73_000 and stim.ids[0] == "nsd-00001" and stim.ids[-1] == "nsd-73000"
    assert stim.paths == [] and stim.name == "nsd-all"
    for row in ROWS:
        sid = nsd_ids.from_index(row)
        img = stim.load(sid)
        assert img.mode == "RGB" and img.size == (425, 425)
        np.testing.assert_array_equal(np.asarray(img), row_pixels(row))
    assert np.asarray(stim.load("nsd-00013", mode="L")).shape == (425, 425)


def test_named_subsets_come_from_the_design_found_in_the_layout(nsd_root: Path, brick: Path) -> None:
    design = NSDDesign.load(nsd_root / DESIGN_FILE)
    shared = nsd_stimuli(brick, "shared1000")
    assert shared.ids == [nsd_ids.nsd_id(k) for k in sorted(design.sharedix)] and len(shared) == 1000
    assert shared.name == "nsd-shared1000"
    s515 = nsd_stimuli(brick, "shared515")
    assert s515.ids == [nsd_ids.nsd_id(k) for k in sorted(design.shared515())]
    assert len(s515) == 4 and set(s515.ids) <= set(shared.ids)
    subj = nsd_stimuli(brick, "subj02")
    assert subj.ids == [nsd_ids.nsd_id(k) for k in sorted(design.subjectim[1])] and len(subj) == 10_000
    assert nsd_stimuli(brick, "subj2").ids == subj.ids
    # images are the rows of their ids, whatever the subset
    np.testing.assert_array_equal(np.asarray(shared.load("nsd-02951")), row_pixels(2950))


def test_explicit_ids_keep_their_order_and_are_canonical(brick: Path) -> None:
    stim = nsd_stimuli(brick, ids=["nsd-02951", "train-0001_nsd-00012", "shared0002_nsd00001"])
    assert stim.ids == ["nsd-02951", "nsd-00013", "nsd-00001"]
    for k, row in enumerate((2950, 12, 0)):
        np.testing.assert_array_equal(np.asarray(stim.load(k)), row_pixels(row))


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (["nsd-00000"], "0-based"),
        (["nsd-00001", "nsd-73001"], "nsd-73001"),
        (["image_01"], "not NSD images"),
        ([], "no NSD image ids"),
        (["nsd-00013", "train-0001_nsd-00012"], "same NSD image"),
    ],
)
def test_ids_that_are_not_nsd_images_raise(brick: Path, ids: list[str], message: str) -> None:
    with pytest.raises(DataError, match=message):
        nsd_stimuli(brick, ids=ids)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("missing", DatasetNotFoundError, "not found"),
        ("not-hdf5", DataError, "not a readable HDF5"),
        ("no-imgBrick", DataError, "no dataset 'imgBrick'"),
        ("too-few-rows", DataError, r"\(20, 425, 425, 3\) uint8; NSD's is \(73000, 425, 425, 3\)"),
        ("float", DataError, "float32"),
        ("group", DataError, "a group"),
    ],
)
def test_a_wrong_stimulus_file_is_one_clear_error(tmp_path: Path, kind: str, error: type, message: str) -> None:
    path = tmp_path / "nsd_stimuli.hdf5"
    if kind == "not-hdf5":
        path.write_text("not hdf5")
    elif kind == "no-imgBrick":
        write_brick(path, rows=(), name="images")
    elif kind == "too-few-rows":
        write_brick(path, rows=(0,), shape=(20, 425, 425, 3))
    elif kind == "float":
        write_brick(path, rows=(), dtype=np.float32)
    elif kind == "group":
        with h5py.File(path, "w") as f:
            f.create_group("imgBrick")
    with pytest.raises(error, match=message):
        nsd_stimuli(path, ids=["nsd-00001"])


def test_a_subset_needing_the_design_file_says_where_it_looked(tmp_path: Path, nsd_root: Path) -> None:
    outside = write_brick(tmp_path / "copy" / "nsd_stimuli.hdf5", rows=(0,))
    with pytest.raises(DatasetNotFoundError, match="--design"):
        nsd_stimuli(outside, "shared1000")
    assert nsd_stimuli(outside, "all").ids[-1] == "nsd-73000"  # "all" needs no design
    assert len(nsd_stimuli(outside, "shared1000", design=nsd_root / DESIGN_FILE)) == 1000
    no_design = write_brick(tmp_path / "root" / STIMULI_FILE, rows=(0,))
    with pytest.raises(DatasetNotFoundError, match=r"nsd_expdesign\.mat not found"):
        nsd_stimuli(no_design, "subj01")
    with pytest.raises(DataError, match=r"unknown NSD subset 'subj09'.*shared515"):
        nsd_stimuli(outside, "subj09")


# ------------------------------------------------------------------------------------------ hashes, pickling
def test_content_hashes_read_only_the_requested_rows(brick: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[int] = []
    original = NSDStimulusFile.pixels

    def counting(self: NSDStimulusFile, k: int) -> np.ndarray:
        read.append(int(self.rows[k]))
        return original(self, k)

    monkeypatch.setattr(NSDStimulusFile, "pixels", counting)
    stim = nsd_stimuli(brick).subset(["nsd-02951", "nsd-00013"])  # of the 73k set: nothing read yet
    assert read == []
    hashes = stim.content_hashes
    assert sorted(read) == [12, 2950]
    # what is hashed: "|u1|(425, 425, 3)|" then the row's bytes (H x W x RGB, C order)
    want = hashlib.sha256(b"|u1|(425, 425, 3)|" + row_pixels(2950).tobytes()).hexdigest()
    assert hashes[0] == want == hash_array(row_pixels(2950))
    assert stim.subset(["nsd-00013"]).content_hashes == [hashes[1]] and len(read) == 2  # kept, not re-read
    assert stim.fingerprint != nsd_stimuli(brick, ids=["nsd-00013", "nsd-02951"]).fingerprint


def test_a_source_set_takes_no_paths_and_needs_one_image_per_id(brick: Path) -> None:
    src = NSDStimulusFile(brick, [0, 12])
    with pytest.raises(DataError, match="not both"):
        StimulusSet(ids=["a", "b"], paths=[Path("a.png"), Path("b.png")], source=src)
    with pytest.raises(DataError, match="3 ids but 2 images"):
        StimulusSet(ids=["a", "b", "c"], paths=[], source=src)
    renamed = StimulusSet(ids=["nsd-00001", "nsd-00013"], paths=[], source=src).with_ids(["x", "y"])
    np.testing.assert_array_equal(np.asarray(renamed.load("y")), row_pixels(12))


def test_pickled_and_in_dataloader_workers(brick: Path) -> None:
    import torch
    from torch.utils.data import DataLoader

    stim = nsd_stimuli(brick, ids=["nsd-00001", "nsd-00013", "nsd-02951", "nsd-73000"])
    stim.load(0)  # the parent holds an open file now
    back = pickle.loads(pickle.dumps(stim))
    assert back == stim and back.source is not None
    np.testing.assert_array_equal(np.asarray(back.load("nsd-73000")), row_pixels(72_999))
    assert isinstance(stim.source, NSDStimulusFile)
    stim.source.close()  # closed files reopen on the next read
    np.testing.assert_array_equal(np.asarray(stim.load(1)), row_pixels(12))

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(stim)

        def __getitem__(self, k: int) -> torch.Tensor:
            return torch.from_numpy(np.asarray(stim.load(k)).copy())

    got = torch.cat(list(DataLoader(Rows(), batch_size=1, num_workers=2)))
    want = np.stack([row_pixels(r) for r in (0, 12, 2950, 72_999)])
    np.testing.assert_array_equal(got.numpy(), want)


# ------------------------------------------------------------------------------------------ same pixels as a file
def test_png_exported_from_the_brick_gives_identical_features(tmp_path: Path, brick: Path) -> None:
    """Algonauts' challenge_data_preparation.py writes Image.fromarray(imgBrick[row]) as train-XXXX_nsd-<row>.png."""
    from llmvem.store import ArtifactStore
    from llmvem.vision import extract_features

    folder = tmp_path / "training_images"
    folder.mkdir()
    with h5py.File(brick, "r") as f:
        for i, row in enumerate((0, 12, 2950)):
            Image.fromarray(f["imgBrick"][row]).convert("RGB").save(folder / f"train-{i + 1:04d}_nsd-{row:05d}.png")
    files = stimuli_from_path(folder)
    assert files.ids == ["nsd-00001", "nsd-00013", "nsd-02951"]  # 0-based file numbers → 1-based ids
    rows = stimuli_from_path(brick, str(_ids_file(tmp_path, files.ids)))
    assert rows.ids == files.ids
    store = ArtifactStore(tmp_path / "store")
    by_file = extract_features(files, store=store, progress=False)
    by_row = extract_features(rows, store=store, progress=False)
    np.testing.assert_array_equal(by_row.values, by_file.values)
    assert by_row.ids == by_file.ids
    assert by_row.key != by_file.key  # file bytes vs pixels: two cache entries (see the module docstring)
    assert extract_features(rows.subset(["nsd-00013"]), store=store, progress=False).values.shape == (1, 1280)


def _ids_file(tmp_path: Path, ids: list[str]) -> Path:
    p = tmp_path / "ids.txt"
    p.write_text("\n".join(ids) + "\n")
    return p


def test_describing_brick_rows_sends_each_row_as_png(tmp_path: Path, brick: Path) -> None:
    from llmvem.describe import describe_stimuli
    from llmvem.describe.loopback import LoopbackChatServer, expected_reply
    from llmvem.describe.openai_compat import OpenAICompatibleDescriber
    from llmvem.store import ArtifactStore

    stim = nsd_stimuli(brick, ids=["nsd-00013", "nsd-02951"])
    with LoopbackChatServer(lifetime_s=60) as srv:
        describer = OpenAICompatibleDescriber("loopback-vlm", base_url=srv.url, timeout_s=5.0)
        desc = describe_stimuli(
            stim, describer, prompt="caption", params={"seed": 3}, store=ArtifactStore(tmp_path / "s"), progress=False
        )
    assert len(desc) == 2 and not desc.failures
    texts = {d.image: d for d in desc.records}
    for sid, row in (("nsd-00013", 12), ("nsd-02951", 2950)):
        d = texts[sid]
        png = stim.locations[stim.index(sid)].png()  # type: ignore[union-attr]
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), row_pixels(row))
        assert d.text == expected_reply(png, d.prompt, 3)  # the server was sent these very PNG bytes
        assert d.image_hash == hash_array(row_pixels(row))
        assert "425x425 RGB" in d.text
