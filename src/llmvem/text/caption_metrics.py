"""Caption metrics: BLEU-1…4, METEOR, ROUGE-L, CIDEr-D and sentence-embedding similarity, with a human ceiling.

Scores decoded (retrieved or generated) captions against the images' human captions the way Doerig et al. (2025)
and MindEye2 report them, so that llmvem's decoding can be compared with theirs. The n-gram metrics are the COCO
caption evaluation code itself (PyPI ``pycocoevalcap``, the maintained fork of ``tylin/coco-caption``): its BLEU,
METEOR 1.5 (Java), ROUGE-L and CIDEr (which is CIDEr-D: clipped counts, Gaussian length penalty σ = 6, × 10), on
text tokenised by the Stanford PTB tokenizer jar it ships (Java, lower-cased, punctuation removed). llmvem only calls
them: the tokenizer is run from a temporary folder rather than the package folder (which may be read-only), texts
are made safe for METEOR's line protocol, and Java's absence is a clear error. SPICE is not offered: its first run
downloads Stanford CoreNLP 3.6.0 models, which an offline machine cannot. ``embedding`` is the mean cosine
similarity between the candidate's sentence embedding and each reference's (any :func:`llmvem.text.embed_texts`
encoder; MiniLM by default).

The human ceiling (:func:`human_ceiling`) scores each human caption against the image's other captions
(leave-one-out) and averages the rounds. With ``matched=True`` (:func:`score_captions`) a model's caption is scored
against the same leave-one-out reference sets, so model and ceiling see equally many references (4 of 5 on COCO).
A ceiling below :data:`MIN_CEILING` (BLEU-3/4 of captions that share no 3- or 4-grams come out as ~1e-6 to 1e-9:
pycocoevalcap's BLEU never returns an exact zero) leaves ``score_over_ceiling`` undefined (NaN) rather than a ratio
of two roundings in the thousands or millions.

Example
-------
>>> refs = {"a": ["a dog runs on grass", "a brown dog running"], "b": ["two cats sleep", "cats asleep on a bed"]}
>>> s = score_captions({"a": "a dog running on grass", "b": "a cat on a bed"}, refs,
...                    metrics=["bleu", "rouge_l"])  # doctest: +SKIP
>>> sorted(s.corpus)  # doctest: +SKIP
['bleu_1', 'bleu_2', 'bleu_3', 'bleu_4', 'rouge_l']
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmvem.errors import ConfigError, DataError

#: every metric :func:`score_captions` computes, in table order (``bleu`` expands to ``bleu_1`` … ``bleu_4``)
METRICS = ("bleu", "meteor", "rouge_l", "cider_d", "embedding")
#: the columns a metric name expands to
COLUMNS = {"bleu": ("bleu_1", "bleu_2", "bleu_3", "bleu_4"), "meteor": ("meteor",), "rouge_l": ("rouge_l",),
           "cider_d": ("cider_d",), "embedding": ("embedding",)}  # fmt: skip
#: the PTB tokens coco-caption removes after tokenising (its ``PUNCTUATIONS``)
_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
Embed = Callable[[list[str]], np.ndarray]


@dataclass
class CaptionScores:
    """Caption metrics of one set of candidates.

    Attributes:
        corpus: metric column → corpus-level score, as coco-caption reports it (BLEU over the corpus; the others
            the mean over images).
        per_image: (n_images, n_columns) table, index = image ids.
        references: how many references each candidate was scored against ("all" or "leave-one-out").
    """

    corpus: dict[str, float]
    per_image: pd.DataFrame
    references: str = "all"
    metrics: list[str] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return len(self.per_image)


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ConfigError(
            "caption metrics: the PTB tokenizer and METEOR need Java, and no 'java' is on PATH; install a Java "
            "runtime (Debian: apt-get install default-jre-headless) or choose metrics without them"
        )
    return java


def _coco_dir() -> Path:
    try:
        import pycocoevalcap.bleu.bleu as bleu_module
    except ImportError as exc:
        raise ConfigError(
            "caption metrics need the COCO caption evaluation code: pip install pycocoevalcap (or llmvem[captions])"
        ) from exc
    return Path(bleu_module.__file__).resolve().parent.parent


def _one_line(text: str) -> str:
    """A caption as one line that is safe in METEOR's ``|||``-separated protocol."""
    return " ".join(str(text).replace("|", " ").split())


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """coco-caption's tokenisation: Stanford PTBTokenizer (lower-cased, one line per text), punctuation removed.

    Args:
        texts: n captions (newlines inside a caption become spaces).
    Returns:
        n tokenised captions (tokens joined by single spaces; possibly empty).
    """
    if not texts:
        return []
    jar = _coco_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    lines = [_one_line(t) for t in texts]
    with tempfile.TemporaryDirectory(prefix="llmvem-ptb-") as tmp:
        src = Path(tmp) / "captions.txt"
        src.write_text("\n".join(lines), encoding="utf-8")
        cmd = [_java(), "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase",
               "-encoding", "utf-8", str(src)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise DataError(f"caption metrics: the PTB tokenizer failed: {proc.stderr.decode(errors='replace')[-500:]}")
    out = proc.stdout.decode("utf-8", errors="replace").split("\n")
    if len(out) < len(lines) or any(o.strip() for o in out[len(lines) :]):
        raise DataError(f"caption metrics: the PTB tokenizer returned {len(out)} lines for {len(lines)} captions")
    return [" ".join(w for w in line.rstrip().split(" ") if w and w not in _PUNCTUATION) for line in out[: len(lines)]]


def _quiet(fn: Callable[[], Any]) -> Any:
    """Run a coco-caption scorer without its prints on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


class _Meteor:
    """One METEOR 1.5 process (coco-caption's wrapper) kept for several scorings; closed on exit."""

    def __init__(self) -> None:
        _java()
        from pycocoevalcap.meteor.meteor import Meteor

        self._scorer = Meteor()

    def __enter__(self) -> _Meteor:
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self._scorer.meteor_p
        with contextlib.suppress(Exception):
            proc.stdin.close()
            proc.kill()
            proc.wait(timeout=10)

    def score(self, gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
        corpus, per = self._scorer.compute_score(gts, res)
        return float(corpus), [float(x) for x in per]


def _ngram_scores(
    gts: dict[str, list[str]], res: dict[str, list[str]], metrics: Sequence[str], meteor: _Meteor | None
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """coco-caption's scorers on tokenised dicts (image → [captions]); returns corpus and per-image scores."""
    corpus: dict[str, float] = {}
    per: dict[str, np.ndarray] = {}
    if "bleu" in metrics:
        from pycocoevalcap.bleu.bleu import Bleu

        b_corpus, b_per = _quiet(lambda: Bleu(4).compute_score(gts, res))
        for n in range(4):
            corpus[f"bleu_{n + 1}"], per[f"bleu_{n + 1}"] = float(b_corpus[n]), np.asarray(b_per[n], float)
    if "meteor" in metrics and meteor is not None:
        m_corpus, m_per = meteor.score(gts, res)
        corpus["meteor"], per["meteor"] = m_corpus, np.asarray(m_per, float)
    if "rouge_l" in metrics:
        from pycocoevalcap.rouge.rouge import Rouge

        r_corpus, r_per = Rouge().compute_score(gts, res)
        corpus["rouge_l"], per["rouge_l"] = float(r_corpus), np.asarray(r_per, float)
    if "cider_d" in metrics:
        from pycocoevalcap.cider.cider import Cider

        c_corpus, c_per = Cider().compute_score(gts, res)
        corpus["cider_d"], per["cider_d"] = float(c_corpus), np.asarray(c_per, float)
    return corpus, per


def _check_metrics(metrics: Sequence[str]) -> list[str]:
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        hint = " (SPICE needs a download of Stanford CoreNLP models, impossible offline)" if "spice" in bad else ""
        raise ConfigError(f"caption metrics: unknown {bad}; known: {', '.join(METRICS)}{hint}")
    if not metrics:
        raise ConfigError("caption metrics: no metric asked for")
    return [m for m in METRICS if m in metrics]


def _check_inputs(candidates: Mapping[str, str], references: Mapping[str, Sequence[str]], min_refs: int) -> list[str]:
    ids = [str(i) for i in candidates]
    missing = [i for i in ids if i not in references]
    if missing:
        raise DataError(f"caption metrics: {len(missing)} candidate image(s) have no references, e.g. {missing[:3]}")
    few = [i for i in ids if len([r for r in references[i] if str(r).strip()]) < min_refs]
    if few:
        raise DataError(f"caption metrics: {len(few)} image(s) have fewer than {min_refs} references, e.g. {few[:3]}")
    if not ids:
        raise DataError("caption metrics: no candidates to score")
    return ids


def _tokenised(texts_by_id: Mapping[Any, Sequence[str]]) -> dict[Any, list[str]]:
    """Tokenise every text of every key in one Java call."""
    flat = [(k, str(t)) for k, v in texts_by_id.items() for t in v]
    tokens = ptb_tokenize([t for _, t in flat])
    out: dict[Any, list[str]] = {k: [] for k in texts_by_id}
    for (k, _), tok in zip(flat, tokens, strict=True):
        out[k].append(tok)
    return out


def _embedding_scores(cands: dict[str, str], refs: dict[str, list[str]], embed: Embed) -> np.ndarray:
    """(n_images,) mean cosine similarity of each candidate with its references."""
    ids = list(cands)
    ref_texts = [t for i in ids for t in refs[i]]
    vecs = np.asarray(embed([cands[i] for i in ids] + ref_texts), dtype=np.float64)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    c, r = vecs[: len(ids)], vecs[len(ids) :]
    out, start = np.empty(len(ids)), 0
    for n, i in enumerate(ids):
        k = len(refs[i])
        out[n] = float((r[start : start + k] @ c[n]).mean())
        start += k
    return out


def _score_round(
    ids: list[str],
    cand_tok: dict[str, str],
    ref_tok: dict[str, list[str]],
    raw: tuple[dict[str, str], dict[str, list[str]]],
    metrics: list[str],
    meteor: _Meteor | None,
    embed: Embed | None,
) -> tuple[dict[str, float], pd.DataFrame]:
    """One scoring of candidates against reference lists: corpus scores and the per-image table."""
    gts = {i: ref_tok[i] for i in ids}
    res = {i: [cand_tok[i]] for i in ids}
    corpus, per = _ngram_scores(gts, res, metrics, meteor)
    if "embedding" in metrics:
        if embed is None:
            raise ConfigError("caption metrics: 'embedding' needs a text encoder (embed=...)")
        per["embedding"] = _embedding_scores(raw[0], raw[1], embed)
        corpus["embedding"] = float(per["embedding"].mean())
    cols = [c for m in metrics for c in COLUMNS[m]]
    return {c: corpus[c] for c in cols}, pd.DataFrame({c: per[c] for c in cols}, index=pd.Index(ids, name="image"))


def _mean_rounds(rounds: list[tuple[dict[str, float], pd.DataFrame]]) -> tuple[dict[str, float], pd.DataFrame]:
    corpus = {k: float(np.mean([r[0][k] for r in rounds])) for k in rounds[0][0]}
    per = pd.concat([r[1] for r in rounds]).groupby(level=0, sort=False).mean()
    return corpus, per


def score_captions(
    candidates: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    metrics: Sequence[str] = METRICS,
    *,
    embed: Embed | None = None,
    matched: bool = False,
) -> CaptionScores:
    """Score one candidate caption per image against the image's reference captions.

    Args:
        candidates: image id → the decoded (retrieved or generated) caption.
        references: image id → its human captions (≥ 1; ≥ 2 with ``matched``).
        metrics: names from :data:`METRICS` (``bleu`` gives BLEU-1…4).
        embed: texts → (n, d) sentence embeddings; needed for ``embedding``.
        matched: score against every leave-one-out subset of the references and average, as
            :func:`human_ceiling` does, so model and ceiling see the same number of references.
    Returns:
        :class:`CaptionScores` (corpus-level dict and an (n_images, n_columns) per-image table).
    Raises:
        DataError: a candidate without (enough) references, or no candidates.
        ConfigError: an unknown metric, no Java, no pycocoevalcap, ``embedding`` without ``embed``.
    """
    metrics = _check_metrics(metrics)
    ids = _check_inputs(candidates, references, 2 if matched else 1)
    refs = {i: [str(r) for r in references[i] if str(r).strip()] for i in ids}
    cands = {i: str(candidates[i]) for i in ids}
    both = _tokenised({**{("ref", i): refs[i] for i in ids}, **{("cand", i): [cands[i]] for i in ids}})
    ref_tok = {i: both["ref", i] for i in ids}
    cand_tok = {i: both["cand", i][0] for i in ids}
    needs_java = bool({"meteor"} & set(metrics))
    with _Meteor() if needs_java else contextlib.nullcontext() as meteor:
        if not matched:
            corpus, per = _score_round(ids, cand_tok, ref_tok, (cands, refs), metrics, meteor, embed)
            return CaptionScores(corpus, per, "all", metrics)
        rounds = []
        for j in range(max(len(refs[i]) for i in ids)):
            sub = [i for i in ids if len(refs[i]) > j]
            drop = {i: (ref_tok[i][:j] + ref_tok[i][j + 1 :]) for i in sub}
            raw = ({i: cands[i] for i in sub}, {i: refs[i][:j] + refs[i][j + 1 :] for i in sub})
            rounds.append(_score_round(sub, cand_tok, drop, raw, metrics, meteor, embed))
    corpus, per = _mean_rounds(rounds)
    return CaptionScores(corpus, per, "leave-one-out", metrics)


def human_ceiling(
    references: Mapping[str, Sequence[str]], metrics: Sequence[str] = METRICS, *, embed: Embed | None = None
) -> CaptionScores:
    """Each human caption scored against the image's other captions, rounds averaged (the human ceiling).

    Round ``j`` takes every image's ``j``-th caption as the candidate and the rest as references (images with fewer
    than ``j + 1`` captions sit that round out); corpus scores and per-image scores are the means over rounds.

    Args:
        references: image id → ≥ 2 human captions (COCO: 5).
        metrics: as :func:`score_captions`.
        embed: as :func:`score_captions`.
    Returns:
        :class:`CaptionScores` with ``references="leave-one-out"``.
    """
    metrics = _check_metrics(metrics)
    ids = _check_inputs(dict.fromkeys(references, ""), references, 2)
    refs = {i: [str(r) for r in references[i] if str(r).strip()] for i in ids}
    tok = _tokenised(refs)
    rounds = []
    with _Meteor() if "meteor" in metrics else contextlib.nullcontext() as meteor:
        for j in range(max(len(v) for v in refs.values())):
            sub = [i for i in ids if len(refs[i]) > j]
            cand_tok = {i: tok[i][j] for i in sub}
            ref_tok = {i: tok[i][:j] + tok[i][j + 1 :] for i in sub}
            raw = ({i: refs[i][j] for i in sub}, {i: refs[i][:j] + refs[i][j + 1 :] for i in sub})
            rounds.append(_score_round(sub, cand_tok, ref_tok, raw, metrics, meteor, embed))
    corpus, per = _mean_rounds(rounds)
    return CaptionScores(corpus, per, "leave-one-out", metrics)


#: a human ceiling below this gives no ``score_over_ceiling`` (NaN): the ratio of two near-zero scores means nothing
MIN_CEILING = 1e-3


def caption_table(model: CaptionScores, ceiling: CaptionScores | None) -> pd.DataFrame:
    """One row per metric column: the model's corpus score, the human ceiling and their ratio (NaN where the
    ceiling is missing or below :data:`MIN_CEILING`).

    Returns:
        columns ``metric``, ``score``, ``human_ceiling``, ``score_over_ceiling``, ``n_images``, ``references``.
    """
    rows = []
    for col, value in model.corpus.items():
        ceil = None if ceiling is None else ceiling.corpus.get(col)
        ratio = value / ceil if ceil is not None and ceil >= MIN_CEILING else float("nan")
        rows.append(
            {"metric": col, "score": value, "human_ceiling": np.nan if ceil is None else ceil,
             "score_over_ceiling": ratio, "n_images": model.n_images, "references": model.references}
        )  # fmt: skip
    return pd.DataFrame(rows)


def implementation() -> str:
    """Which implementation computed the numbers, with its version (for tables and logs)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("pycocoevalcap")
    except PackageNotFoundError:
        v = "unknown"
    return f"coco-caption (pycocoevalcap {v}): BLEU, METEOR 1.5, ROUGE-L, CIDEr-D on PTB tokens; embedding: cosine"


def score_with_ceiling(
    candidates: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    metrics: Sequence[str] = METRICS,
    *,
    embed: Embed | None = None,
) -> tuple[pd.DataFrame, CaptionScores, CaptionScores | None]:
    """Candidates scored on the images that have references, beside the human ceiling of those images.

    When every scored image has ≥ 2 references the model is scored ``matched`` (leave-one-out, as the ceiling);
    otherwise against all references and without a ceiling.

    Returns:
        (:func:`caption_table`, the model's scores, the ceiling or ``None``).
    Raises:
        DataError: no candidate image has a reference.
    """
    ids = [i for i in candidates if references.get(i)]
    if not ids:
        raise DataError("caption metrics: none of the decoded stimuli has a reference caption")
    refs = {i: [str(r) for r in references[i] if str(r).strip()] for i in ids}
    both = all(len(v) >= 2 for v in refs.values())
    model = score_captions({i: candidates[i] for i in ids}, refs, metrics, embed=embed, matched=both)
    ceiling = human_ceiling(refs, metrics, embed=embed) if both else None
    return caption_table(model, ceiling), model, ceiling


def usable_metrics(metrics: Sequence[str]) -> tuple[list[str], str | None]:
    """The metrics this machine can compute, and why the others cannot (``None`` when all can).

    Every n-gram metric needs coco-caption's PTB tokenizer, hence Java and ``pycocoevalcap``; ``embedding`` needs
    neither.
    """
    ngram = [m for m in metrics if m != "embedding"]
    if not ngram:
        return list(metrics), None
    try:
        _coco_dir()
        _java()
    except ConfigError as exc:
        return [m for m in metrics if m == "embedding"], str(exc)
    return list(metrics), None
