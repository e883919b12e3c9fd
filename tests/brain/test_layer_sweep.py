"""Layer sweeps (:mod:`llmvem.brain.layer_sweep`): a planted best layer per ROI / RDM target is chosen, the choice
never reads the test images, the validation split is a seeded share of the training images, bad input is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmvem.brain.layer_sweep import (
    MIN_VALIDATION,
    check_layers,
    check_sweep_split,
    choose_layers,
    mean_curve,
    seeded_holdout,
    sweep_encoding_layers,
    sweep_rsa_layers,
    sweep_summary,
    validation_split,
)
from llmvem.brain.ridge import RidgeEncoder
from llmvem.brain.rsa import compute_rdm
from llmvem.errors import DataError

N, D, V = 300, 8, 15  # images, dims per layer, voxels per ROI
LAYERS = [f"layer{k}" for k in range(1, 6)]


def _layers(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Five layers of a 'model': layer k carries its own latent Z_k and 0.6 of the previous layer's, so adjacent
    layers share signal (a curve with a peak, not a spike)."""
    z = [rng.standard_normal((N, D)) for _ in LAYERS]
    feats = {name: z[k] + (0.6 * z[k - 1] if k else 0.0) for k, name in enumerate(LAYERS)}
    return feats, z


@pytest.fixture(scope="module")
def planted() -> dict[str, object]:
    """ROI A driven by layer 2's latent, ROI B by layer 4's, ROI C by none; a 20 % test hold-out."""
    rng = np.random.default_rng(1)
    feats, z = _layers(rng)

    def roi(latent: np.ndarray | None) -> np.ndarray:
        noise = rng.standard_normal((N, V))
        return noise if latent is None else latent @ rng.standard_normal((D, V)) / np.sqrt(D) + 0.8 * noise

    y = np.concatenate([roi(z[1]), roi(z[3]), roi(None)], axis=1)
    masks = {r: np.repeat(np.arange(3) == k, V) for k, r in enumerate("ABC")}
    train, test = seeded_holdout(N, 0.2, seed=0)
    return {"feats": feats, "y": y, "masks": masks, "train": train, "test": test, "z": z}


def _sweep(p: dict[str, object], feats: dict[str, np.ndarray] | None = None, **kw: object):  # type: ignore[no-untyped-def]
    return sweep_encoding_layers(feats or p["feats"], p["y"], p["masks"], p["train"], p["test"], seed=3,  # type: ignore[arg-type]
                                 make_model=lambda: RidgeEncoder(cv="gcv"), **kw)  # fmt: skip


def test_encoding_sweep_chooses_the_planted_layer_per_roi(planted: dict[str, object]) -> None:
    res = _sweep(planted)
    assert res.choice["A"] == "layer2" and res.choice["B"] == "layer4"
    curve = res.curve.set_index(["group", "layer"])
    assert list(res.curve.columns) == ["group", "layer", "layer_index", "n_voxels", "val_score", "test_score", "chosen"]
    assert len(res.curve) == 3 * len(LAYERS) and res.curve.groupby("group")["chosen"].sum().tolist() == [1, 1, 1]
    for roi, best in (("A", "layer2"), ("B", "layer4")):
        # a peaked curve: the chosen layer beats its neighbours on the test images too (by a margin well above noise)
        assert curve.loc[(roi, best), "test_score"] > curve.loc[(roi, "layer1"), "test_score"] + 0.1
        assert curve.loc[(roi, best), "test_score"] > curve.loc[(roi, "layer5"), "test_score"] + 0.1
        assert curve.loc[(roi, best), "val_score"] > 0.4
    # the ROI no layer drives scores about 0 everywhere
    assert res.curve[res.curve["group"] == "C"]["test_score"].abs().max() < 0.15
    assert (res.n_fit, res.n_val, res.n_test) == (192, 48, 60)
    assert res.curve["n_voxels"].eq(V).all()


def test_test_images_never_choose(planted: dict[str, object]) -> None:
    """Corrupting a layer's test rows (and the responses' test rows) changes test scores, never the choice or the
    validation curve."""
    base = _sweep(planted)
    feats = {k: v.copy() for k, v in planted["feats"].items()}  # type: ignore[attr-defined]
    rng = np.random.default_rng(9)
    feats["layer2"][planted["test"]] = rng.standard_normal((len(planted["test"]), D)) * 50  # type: ignore[arg-type]
    feats["layer3"][planted["test"]] = feats["layer4"][planted["test"]] * 3  # type: ignore[index]
    bad = _sweep(planted, feats)
    assert bad.choice == base.choice
    pd.testing.assert_series_equal(bad.curve["val_score"], base.curve["val_score"])
    a2 = (base.curve["group"] == "A") & (base.curve["layer"] == "layer2")
    assert bad.curve.loc[a2, "test_score"].item() < base.curve.loc[a2, "test_score"].item() - 0.3  # test rows read


def test_a_layer_best_on_the_test_images_is_not_chosen(planted: dict[str, object]) -> None:
    """'cheat': ROI B's own latent on the fitting and test images, noise on the validation images — the best test
    score of every layer for B, never chosen."""
    _, val = validation_split(planted["train"], 0.2, seed=3)  # type: ignore[arg-type]  (_sweep's split)
    cheat = planted["z"][3].copy()  # type: ignore[index]
    cheat[val] = np.random.default_rng(8).standard_normal((len(val), D))
    res = _sweep(planted, {**planted["feats"], "cheat": cheat})  # type: ignore[dict-item]
    b = res.curve[res.curve["group"] == "B"].set_index("layer")
    assert b["test_score"].idxmax() == "cheat" and b.loc["cheat", "test_score"] > b.loc["layer4", "test_score"]
    assert res.choice["B"] == "layer4" and b.loc["cheat", "val_score"] < 0.15


def test_given_test_scores_are_used_instead_of_a_refit(planted: dict[str, object]) -> None:
    base = _sweep(planted)
    given = {name: {roi: (0.5 if name == "layer1" else 0.0) for roi in "ABC"} for name in LAYERS}
    res = _sweep(planted, test_scores=given)
    assert res.choice == base.choice  # validation decides
    assert (res.curve.loc[res.curve["layer"] == "layer1", "test_score"] == 0.5).all()
    # without test_scores, the refit on all training images equals an independent fit scored on the test images
    from llmvem.brain.metrics import pearson_r

    p = planted
    x = p["feats"]["layer4"]  # type: ignore[index]
    y = p["y"]
    model = RidgeEncoder(cv="gcv").fit(x[p["train"]], y[p["train"]])  # type: ignore[index]
    r = np.asarray(pearson_r(y[p["test"]], model.predict(x[p["test"]])))  # type: ignore[index]
    b4 = base.curve[(base.curve["layer"] == "layer4") & (base.curve["group"] == "B")]["test_score"].item()
    assert b4 == pytest.approx(float(r[V : 2 * V].mean()), rel=1e-6)


def test_validation_split_is_a_seeded_share_of_the_training_rows() -> None:
    train = np.arange(5, 105)
    fit, val = validation_split(train, 0.25, seed=0)
    assert len(val) == 25 and len(fit) == 75
    assert not set(fit) & set(val) and set(fit) | set(val) == set(train)
    assert np.array_equal(val, validation_split(train, 0.25, seed=0)[1])
    assert not np.array_equal(val, validation_split(train, 0.25, seed=1)[1])
    tr, te = seeded_holdout(50, 0.2, seed=0)
    assert len(te) == 10 and not set(tr) & set(te) and len(tr) + len(te) == 50


def test_rsa_sweep_chooses_the_planted_layer_on_validation_rdms() -> None:
    rng = np.random.default_rng(4)
    feats, _ = _layers(rng)
    n = 120
    feats = {k: v[:n] for k, v in feats.items()}
    subjects = ["s1", "s2", "s3"]
    # each subject's RDM: layer 3's RDM over noisy features
    rdms = np.stack([compute_rdm(feats["layer3"] + 0.7 * rng.standard_normal((n, D))) for _ in subjects])
    train, test = seeded_holdout(n, 0.25, seed=0)
    res = sweep_rsa_layers(feats, rdms, subjects, train, test, val_fraction=0.3, seed=0, method="spearman")
    assert list(res.curve.columns) == ["subject", "group", "layer", "layer_index", "val_score", "test_score", "chosen"]
    chosen = res.curve[res.curve["chosen"]]
    assert chosen["layer"].tolist() == ["layer3"] * 3  # each subject's own choice
    curve = mean_curve(res.curve)
    assert curve.loc[curve["chosen"], "layer"].tolist() == ["layer3"]
    assert curve["n_subjects"].eq(3).all() and curve.loc[curve["chosen"], "n_chosen"].item() == 3
    summary = sweep_summary(res.curve, curve)
    assert summary["target"]["layer"] == "layer3" and summary["target"]["test_score"] > 0.3
    # the test images' rows of a layer never change the choice
    bad = {k: v.copy() for k, v in feats.items()}
    bad["layer1"][test] = feats["layer3"][test]
    res2 = sweep_rsa_layers(bad, rdms, subjects, train, test, val_fraction=0.3, seed=0, method="spearman")
    pd.testing.assert_series_equal(res2.curve["val_score"], res.curve["val_score"])
    assert res2.curve[res2.curve["chosen"]]["layer"].tolist() == ["layer3"] * 3
    assert (res2.curve[res2.curve["layer"] == "layer1"]["test_score"].to_numpy() > 0.5).all()  # they are read


def test_choose_layers_ties_go_to_the_shallower_layer_and_nan_chooses_none() -> None:
    curve = pd.DataFrame({"group": ["A"] * 3 + ["B"] * 2, "layer": ["a", "b", "c", "a", "b"],
                          "layer_index": [0, 1, 2, 0, 1], "val_score": [0.1, 0.3, 0.3, np.nan, np.nan]})  # fmt: skip
    with pytest.warns(RuntimeWarning, match="no finite validation score in B"):
        out = choose_layers(curve)
    assert out["chosen"].tolist() == [False, True, False, False, False]


def test_bad_layers_and_splits_are_refused() -> None:
    ids = [f"i{k}" for k in range(40)]
    with pytest.raises(DataError, match="needs ≥ 2 layers"):
        check_layers({"a": ids}, "sweep")
    with pytest.raises(DataError, match="layer 'b' has 39 rows, layer 'a' 40"):
        check_layers({"a": ids, "b": ids[:39]}, "sweep")
    with pytest.raises(DataError, match="layer 'b' lacks 1 of the stimuli of layer 'a'"):
        check_layers({"a": ids, "b": [*ids[:39], "other"]}, "sweep")
    check_layers({"a": ids, "b": ids[::-1]}, "sweep")  # the same stimuli in another order: aligned by id
    with pytest.raises(DataError, match=f"is 8 image\\(s\\); the layer choice needs ≥ {MIN_VALIDATION}"):
        check_sweep_split(40, 0.2, "sweep")
    with pytest.raises(DataError, match="ridge cv=10 needs ≥ 20"):
        check_sweep_split(30, 0.4, "sweep", cv=10)
    check_sweep_split(60, 0.2, "sweep", cv="loo")


def test_rsa_sweep_chooses_on_all_training_images_by_default_and_never_reads_the_test_rows() -> None:
    """Decision 0017 addendum: RSA fits nothing, so the default choice is on every training image's RDM rows."""
    from llmvem.brain.rsa import compare_rdms

    rng = np.random.default_rng(4)
    feats, _ = _layers(rng)
    n = 120
    feats = {k: v[:n] for k, v in feats.items()}
    rdms = np.stack([compute_rdm(feats["layer3"] + 0.7 * rng.standard_normal((n, D))) for _ in range(2)])
    train, test = seeded_holdout(n, 0.25, seed=0)
    res = sweep_rsa_layers(feats, rdms, ["s1", "s2"], train, test, seed=0, method="spearman")
    assert (res.n_fit, res.n_val, res.n_test) == (0, len(train), len(test))
    assert res.curve.loc[res.curve["chosen"], "layer"].tolist() == ["layer3"] * 2
    sub = np.ix_(train, train)
    own = compare_rdms(compute_rdm(feats["layer1"][train]), rdms[:, sub[0], sub[1]], "spearman")
    np.testing.assert_allclose(res.curve.loc[res.curve["layer"] == "layer1", "val_score"], own)  # all of train
    bad = {k: v.copy() for k, v in feats.items()}
    bad["layer1"][test] = 100 * rng.standard_normal((len(test), D))
    res2 = sweep_rsa_layers(bad, rdms, ["s1", "s2"], train, test, seed=0, method="spearman")
    pd.testing.assert_series_equal(res2.curve["val_score"], res.curve["val_score"])
    assert not np.allclose(res2.curve["test_score"], res.curve["test_score"])
