"""Brain stage: ridge encoding models, encoding metrics and representational similarity analysis."""

from llmvem.brain.metrics import (
    algonauts_score,
    pearson_r,
    pearson_r_rows,
    r2_score_columns,
    roi_summary,
)
from llmvem.brain.ridge import RidgeEncoder, ridge_loo_alphas
from llmvem.brain.rsa import RSAResult, compare_rdms, compute_rdm, noise_ceiling, rsa_scores, upper_tri

__all__ = [
    "RSAResult",
    "RidgeEncoder",
    "algonauts_score",
    "compare_rdms",
    "compute_rdm",
    "noise_ceiling",
    "pearson_r",
    "pearson_r_rows",
    "r2_score_columns",
    "ridge_loo_alphas",
    "roi_summary",
    "rsa_scores",
    "upper_tri",
]
