"""Shared synthetic fixtures: small, fixed-seed datasets generated once per session."""

import numpy as np
import pytest
import torch

from temporal.synthetic_crosstask import SynthConfig, generate

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small_ds():
    """Few videos per task, related and unseen tasks: the weak-supervision regime of the seeds."""
    return generate(
        SynthConfig(
            n_primary=6,
            n_related=6,
            n_unseen=2,
            train_videos=4,
            test_videos=10,
            related_videos=10,
            n_verbs=12,
            n_nouns=16,
            seed=2,
        )
    )


@pytest.fixture(scope="session")
def intro_ds():
    """Videos with intros/outros and distractors, for the actionness claims."""
    return generate(
        SynthConfig(
            n_primary=5,
            n_related=3,
            train_videos=16,
            test_videos=12,
            related_videos=10,
            p_intro=0.8,
            distractors_per_min=3.0,
            seed=2,
        )
    )


@pytest.fixture
def rng():
    return np.random.default_rng(0)
