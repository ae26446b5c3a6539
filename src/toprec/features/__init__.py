"""Per-user features derived from fitted models, for the layers below (ensemble re-ranker, report, any model).

Sits between ``models/`` (it fits them) and ``ensemble/`` (which uses it).

* :mod:`.clusters` — ``user_clusters``: K-means over a factor model's user
  vectors, k chosen by silhouette, seeded; ``UserClusters.categories`` /
  ``one_hot`` give the cluster as a categorical feature.
"""

from .clusters import UserClusters, cluster_item_share, cluster_vectors, parse_spec, user_clusters, user_vectors

__all__ = ["UserClusters", "cluster_item_share", "cluster_vectors", "parse_spec", "user_clusters", "user_vectors"]
