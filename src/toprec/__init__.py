"""toprec: implicit feedback to the best top-N recommendations, fast."""

from .version import __version__  # noqa: F401 - re-exported
from . import metrics, split  # noqa: E402
from .data.dataset import Dataset  # noqa: E402
from .errors import ToprecError  # noqa: E402
from .recommend import Recommendations  # noqa: E402
from . import models  # noqa: E402

__all__ = ["Dataset", "Recommendations", "ToprecError", "metrics", "models", "split", "__version__"]
