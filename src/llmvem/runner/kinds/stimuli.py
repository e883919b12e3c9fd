"""Stimulus sources: the generated demo set, the 92-object set, the NSD shared images."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from llmvem.runner.parts import STIMULI, Params, part
from llmvem.runner.state import RunState, Stimuli


class DemoParams(Params):
    n_images: int = Field(240, ge=24, le=5000, description="number of generated images")
    n_voxels_per_roi: int = Field(200, ge=10, le=20000, description="simulated voxels per ROI")
    n_repeats: int = Field(3, ge=2, le=20, description="presentations per image")


@part(STIMULI, "demo", DemoParams)
def demo(p: DemoParams, state: RunState, name: str) -> Stimuli:
    """The generated demo set (images, ground-truth captions, a simulated cortex with train/test splits), seeded by
    ``settings.seed``, kept in the artifact store's ``demo_sets/``."""
    from llmvem.data.synthetic import generate_demo_set

    seed = state.cfg.seed
    set_dir = state.store.root / "demo_sets" / f"n{p.n_images}-v{p.n_voxels_per_roi}-r{p.n_repeats}-s{seed}"
    d = generate_demo_set(set_dir, n_images=p.n_images, n_voxels_per_roi=p.n_voxels_per_roi, n_repeats=p.n_repeats,
                          seed=seed)  # fmt: skip
    ids = d.stimuli.ids
    state.log(f"stimuli {name}: {len(ids)} generated images, ROIs {d.brain.rois} × {p.n_voxels_per_roi} voxels, "
              f"{p.n_repeats} repeats ({set_dir})")  # fmt: skip
    return Stimuli(d.stimuli, texts=[dict(d.captions)], labels=[[lab] for lab in d.stimuli.labels or []], brain=d.brain,
                   splits=dict(d.brain.splits), extra={"captions_path": d.captions_path})  # fmt: skip


class Objects92Params(Params):
    pass


@part(STIMULI, "objects92", Objects92Params)
def objects92(p: Objects92Params, state: RunState, name: str) -> Stimuli:
    """The 92-object set (``data_dir/objects92``): images, one LLM description each, semantic category names
    (:func:`llmvem.data.objects92.category_lists`), the Cichy / Kriegeskorte RDM sets."""
    from llmvem.data.datasets import load_dataset
    from llmvem.data.objects92 import category_lists

    obj = load_dataset("objects92", state.cfg.data_dir)
    ids = obj.stimuli.ids
    state.log(f"stimuli {name}: objects92, {len(ids)} images, RDM sets {', '.join(sorted(obj.rdms))}")
    return Stimuli(obj.stimuli, texts=[dict(obj.descriptions)], labels=category_lists(obj.categories, ids),
                   rdms=dict(obj.rdms))  # fmt: skip


class NSDParams(Params):
    describers: str | list[str] = Field("qwen2.5vl_7b", description="describer(s) whose texts the images need: a "
                                        "name, a list or 'all'")  # fmt: skip
    prompts: str | list[str] = Field("general_description", description="prompt(s): a name, a list or 'all'")
    n_images: int = Field(1000, ge=20, le=1000, description="the first n images described by every source")
    heldout: float | None = Field(None, gt=0, lt=0.9, description="share held out as the test split (seeded by "
                                  "heldout_seed; none: no splits)")  # fmt: skip
    heldout_seed: int = Field(12345, description="the seed of the held-out split")


@part(STIMULI, "nsd_shared1000", NSDParams)
def nsd_shared1000(p: NSDParams, state: RunState, name: str) -> Stimuli:
    """The NSD shared images described by every (describer, prompt) source, the first ``n_images`` of them, with
    one text mapping per source."""
    from llmvem.data.datasets import load_dataset

    nsd = load_dataset("nsd_shared1000", state.cfg.data_dir)
    sources, sets = nsd.description_sets(p.describers, p.prompts)
    if len(sets) < len(nsd.stimuli):
        state.log(f"    note: {len(nsd.stimuli) - len(sets)} NSD image(s) lack a {p.describers}/{p.prompts} "
                  "description and are left out")  # fmt: skip
    ids = list(sets)[: p.n_images]
    texts: list[dict[str, Any]] = [{i: sets[i][k] for i in ids} for k in range(len(sources))]
    what = "/".join(sources[0]) if len(sources) == 1 else f"mean of {len(sources)} describer × prompt sources"
    state.log(f"stimuli {name}: {len(ids)} of {len(nsd.stimuli)} NSD shared images, descriptions: {what}")
    # of the first n_images NSD images, those without every description (left out; later described ones follow)
    n_undescribed = len(set(nsd.stimuli.ids[: p.n_images]) - set(sets))
    state.note("stimuli", name, {"n_images": len(ids), "n_undescribed": n_undescribed})
    splits = {}
    if p.heldout is not None:  # one held-out split for every model and seed (llmvem.data.splits)
        from llmvem.data.splits import heldout_split

        train, test = heldout_split(len(ids), p.heldout, p.heldout_seed)
        splits = {"train": [ids[k] for k in train], "test": [ids[k] for k in test]}
        state.note("stimuli", name, {"n_train": len(train), "n_test": len(test)})
    hed = [str(nsd.hed.loc[i, "HED_short"]) for i in ids]
    return Stimuli(nsd.stimuli.subset(ids), texts=texts, splits=splits, extra={"sources": sources, "hed": hed})
