"""``toprec.models.load``: the README's way back from ``model.save``."""

from __future__ import annotations

import numpy as np

from toprec import models, split
from toprec.models import Recommender


def test_models_load_is_recommender_load(tmp_path, dataset):
    train, test = split.competition(dataset, last=1, random=4, seed=0)
    for name, params in (("ease", {"l2": 50.0}), ("itemknn", {"k": 10})):
        model = models.get(name, **params).fit(train)
        model.save(tmp_path / name)
        back = models.load(tmp_path / name)
        assert type(back) is type(model) and back.params == model.params
        a, b = model.recommend(test.users, k=10), back.recommend(test.users, k=10)
        assert np.array_equal(a.items, b.items) and np.array_equal(a.scores, b.scores)
        same = Recommender.load(tmp_path / name).recommend(test.users, k=10)
        assert np.array_equal(same.items, b.items)
    assert "load" in models.__all__
