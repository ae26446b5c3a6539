"""Small, fast parameters per registered model for the tests (tiny data, seconds): test settings, kept here.

The shared contract (``test_contract.py``) and the model families' tests fit
with these; a model not listed runs with its defaults.
"""

from __future__ import annotations

CONTRACT_PARAMS: dict[str, dict] = {
    "admm-slim": {"l1": 1.0, "l2": 20.0, "rho": 200.0, "iterations": 10},
    "autorec": {"epochs": 4, "hidden": 16, "batch_size": 32, "lr": 1e-2},
    "bert4rec": {"epochs": 2, "factors": 16, "max_len": 16, "batch_size": 32, "lr": 5e-3, "patience": 0, "ff_mult": 1},
    "bpr": {"factors": 8, "iterations": 30, "learning_rate": 0.05, "regularization": 0.05},
    "cdae": {"epochs": 4, "hidden": 16, "batch_size": 32, "lr": 1e-2},
    "cease": {"l2": 50.0},
    "cfm": {"epochs": 2, "factors": 4, "channels": 2, "batch_size": 32, "lr": 0.01, "patience": 0},
    "deepfm": {"epochs": 3, "factors": 8, "hidden": 8, "batch_size": 32, "lr": 0.01, "patience": 0},
    "ease": {"l2": 50.0},
    "easer": {"l2": 20.0, "l2_pairs": 50.0, "n_pairs": 40, "min_support": 3},
    "edlae": {"l2": 20.0, "dropout": 0.25},
    "ials": {"factors": 8, "iterations": 6, "regularization": 10.0, "alpha": 3.0, "num_threads": 1},
    "fm": {"epochs": 3, "factors": 8, "batch_size": 32, "lr": 0.01, "patience": 0},
    "itemknn": {"k": 20},
    "lightgcn": {"epochs": 3, "factors": 16, "layers": 2, "batch_size": 512, "lr": 0.01},
    "lmf": {"factors": 6, "iterations": 10},
    "logistic-fm": {"epochs": 3, "factors": 8, "batch_size": 32, "lr": 0.01, "patience": 0},
    "multidae": {"epochs": 4, "latent": 16, "batch_size": 32, "lr": 1e-2},
    "multi-ease": {"epochs": 3, "l2": 20.0, "batch_size": 32, "lr": 1e-3},
    "multivae": {"epochs": 4, "latent": 8, "hidden": 16, "batch_size": 32, "lr": 1e-2},
    "ncf": {"epochs": 3, "factors": 8, "mlp_factors": 8, "batch_size": 512, "lr": 0.01, "patience": 0},
    "ngcf": {"epochs": 3, "factors": 16, "layers": 2, "batch_size": 512, "lr": 0.01},
    "popularity": {},
    "recvae": {"epochs": 3, "hidden": 16, "latent": 8, "batch_size": 32, "lr": 1e-2},
    "rp3beta": {"k": 20},
    "seqrules": {"window": 3, "last_n": 5, "k": 20},
    "s3rec": {"epochs": 2, "factors": 16, "max_len": 16, "batch_size": 32, "lr": 5e-3, "patience": 0,
              "pretrain_epochs": 2, "pretrain_batch_size": 64},
    "sansa": {"l2": 50.0, "density": 0.5, "factor_size": 8},
    "sasrec": {"epochs": 2, "factors": 16, "max_len": 16, "batch_size": 32, "lr": 5e-3, "patience": 0},
    "vasp": {"epochs": 3, "latent": 8, "l2": 20.0, "batch_size": 32, "lr": 1e-2},
}


def contract_params(name: str) -> dict:
    """A copy of the model's fast test parameters ({} when it has none)."""
    return dict(CONTRACT_PARAMS.get(name, {}))
