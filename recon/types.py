"""Type aliases shared by the recon modules (mypy checks recon/ strictly): arrays and JSON-ready records.

Only aliases live here, so any recon module may import it without pulling in anything heavy.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

Array: TypeAlias = npt.NDArray[Any]
"""A NumPy array of any dtype (where the dtype varies with the input or is not worth pinning)."""
FloatArray: TypeAlias = npt.NDArray[np.float64]
"""A float64 array: positions, poses, scores."""
IntArray: TypeAlias = npt.NDArray[np.int64]
"""An int64 array: ids and indices."""
JSONDict: TypeAlias = dict[str, Any]
"""A JSON-ready object: what a stage writes to (or reads from) a ``.json`` file or reports."""
