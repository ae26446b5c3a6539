"""toprec: implicit feedback to the best top-N recommendations, fast."""

__version__ = "0.1.0"

from . import metrics, split  # noqa: E402
from .data.dataset import Dataset  # noqa: E402
from .errors import ToprecError  # noqa: E402
from .recommend import Recommendations  # noqa: E402
from . import models  # noqa: E402

__all__ = ["Dataset", "Recommendations", "ToprecError", "metrics", "models", "split", "__version__"]
