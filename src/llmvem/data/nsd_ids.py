"""NSD stimulus ids: one convention, defined here and nowhere else.

An NSD image is ``nsd-NNNNN``: the **1-based** 73k id, zero-padded to five digits (``nsd-00001`` … ``nsd-73000``).
That is NSD's own convention (``nsd_expdesign.mat``'s ``subjectim`` and ``sharedix``, ``responses.tsv``'s
``73KID``, the ``sharedNNNN_nsdNNNNN.png`` file names of ``nsddata/stimuli/nsd/shared1000``).

Other names of the same images, and how they map:

================================  ======================================  =====================================
where                             looks like                              canonical id
================================  ======================================  =====================================
NSD shared1000 PNG / our JPEG     ``shared0001_nsd02951``                 ``nsd-02951`` (1-based already)
Algonauts 2023 image files        ``train-0001_nsd-00013``                ``nsd-00014`` (the file number is the
                                  ``test-0001_nsd-00845``                 0-based index into the 73k brick)
``nsd_stimuli.hdf5`` row          ``imgBrick[12]``                        ``nsd-00013`` (row + 1)
``nsd_stim_info_merged.csv``      ``nsdId`` 12                            ``nsd-00013`` (0-based + 1)
================================  ======================================  =====================================

Because ``nsd-00013`` means one image to NSD and the *previous* one to an Algonauts file name read literally, ids
that match only after a shift of one are an error (:func:`explain_mismatch`), and ``nsd-00000`` (which exists only
0-based) is rejected (:func:`check_ids`).

>>> canonical_id("train-0001_nsd-00013")
'nsd-00014'
>>> canonical_id("shared0001_nsd02951")
'nsd-02951'
>>> from_index(0), to_index("nsd-00001")
('nsd-00001', 0)
>>> canonical_id("image_01") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from llmvem.errors import DataError

N_IMAGES = 73_000
_CANONICAL = re.compile(r"^nsd-(\d{5})$")
_SHARED = re.compile(r"^shared(\d{4})_nsd(\d{5})$")
_ALGONAUTS = re.compile(r"^(train|test)-(\d{4,})_nsd-(\d{5})$", re.IGNORECASE)


def nsd_id(nsd73k: int) -> str:
    """``nsd-NNNNN`` of a 1-based 73k id (1 … 73,000)."""
    k = int(nsd73k)
    if not 1 <= k <= N_IMAGES:
        raise DataError(f"NSD 73k id must be 1–{N_IMAGES} (1-based), got {k}")
    return f"nsd-{k:05d}"


def from_index(index: int) -> str:
    """Canonical id of a 0-based row of ``nsd_stimuli.hdf5`` (``imgBrick``) or an Algonauts file number."""
    return nsd_id(int(index) + 1)


def parse(stimulus_id: str) -> int | None:
    """1-based 73k id of a canonical ``nsd-NNNNN`` id, or ``None`` if ``stimulus_id`` is not one."""
    m = _CANONICAL.match(stimulus_id)
    if m is None:
        return None
    k = int(m.group(1))
    return k if 1 <= k <= N_IMAGES else None


def to_index(stimulus_id: str) -> int:
    """0-based row of ``nsd_stimuli.hdf5`` of a canonical id."""
    k = parse(stimulus_id)
    if k is None:
        raise DataError(f"{stimulus_id!r} is not a canonical NSD id (nsd-00001 … nsd-{N_IMAGES})")
    return k - 1


def canonical_id(name: str) -> str | None:
    """The canonical id of any known NSD image name (a file stem), or ``None`` if ``name`` is none of them."""
    if (m := _CANONICAL.match(name)) is not None:
        return name if 1 <= int(m.group(1)) <= N_IMAGES else None
    if (m := _SHARED.match(name)) is not None:
        return nsd_id(int(m.group(2)))
    if (m := _ALGONAUTS.match(name)) is not None:
        return from_index(int(m.group(3)))
    return None


def canonical_ids(names: Sequence[str], what: str = "stimuli") -> list[str]:
    """Map a set's ids to canonical NSD ids when they are all NSD names; leave them unchanged when none is.

    Args:
        names: ids or file stems (length n).
        what: what they name, for messages.
    Returns:
        n ids: canonical when every name is a known NSD name, else ``names`` unchanged.
    Raises:
        DataError: some names are NSD names and others not (a mixed folder), or two names map to one image.
    """
    mapped = [canonical_id(str(n)) for n in names]
    known = sum(m is not None for m in mapped)
    if known == 0:
        return [str(n) for n in names]
    if known < len(mapped):
        odd = [str(n) for n, m in zip(names, mapped, strict=True) if m is None]
        raise DataError(
            f"{what}: {known} of {len(mapped)} names are NSD image names but {len(odd)} are not "
            f"(e.g. {odd[:3]}); keep NSD images in a folder of their own"
        )
    out = [m for m in mapped if m is not None]
    seen: dict[str, str] = {}
    for n, m in zip(names, out, strict=True):
        if m in seen:
            raise DataError(f"{what}: {seen[m]!r} and {n!r} are the same NSD image ({m})")
        seen[m] = str(n)
    return out


def check_ids(ids: Sequence[str], what: str) -> None:
    """Reject ``nsd-NNNNN`` ids outside 1 … 73,000: ``nsd-00000`` means the ids were written 0-based.

    Raises:
        DataError: naming the offending ids and how to fix them.
    """
    bad = [i for i in ids if (m := _CANONICAL.match(i)) is not None and not 1 <= int(m.group(1)) <= N_IMAGES]
    if bad:
        raise DataError(
            f"{what}: ids {bad[:5]} are not NSD ids: nsd-NNNNN is the 1-based 73k id (nsd-00001 … nsd-{N_IMAGES}); "
            "these look 0-based (a row of nsd_stimuli.hdf5 or an Algonauts file number). Write ids with "
            "llmvem.data.nsd_ids.from_index, or extract features with `llmvem features`, which writes canonical ids"
        )


def explain_mismatch(reference: Sequence[str], other: Sequence[str]) -> str | None:
    """If the NSD ids of ``reference`` missing from ``other`` are all found there after a shift of ±1, say so.

    Returns:
        A sentence for an error message, or ``None`` when the mismatch is not an off-by-one of NSD ids.
    """
    have = set(other)
    missing = [parse(i) for i in reference if i not in have]
    numbers = [k for k in missing if k is not None]
    if not numbers or len(numbers) < len(missing):
        return None
    for shift in (1, -1):
        hits = sum(1 <= k + shift <= N_IMAGES and nsd_id(k + shift) in have for k in numbers)
        if hits == len(numbers):
            return (
                f"every missing id is present after a shift of {shift:+d} (e.g. {nsd_id(numbers[0])} → "
                f"{nsd_id(numbers[0] + shift)}): the two sides number NSD images differently (0- vs 1-based). "
                "NSD ids are 1-based (nsd-00001 … nsd-73000); Algonauts file names and nsd_stimuli.hdf5 rows are "
                "0-based. Re-extract with `llmvem features` (it writes canonical ids) rather than renaming by hand"
            )
    return None
