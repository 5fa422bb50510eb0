"""Temporal stage: step localization and actionness on per-clip features ``X[T, D]``.

Modules: ``data`` (CrossTask/COIN I/O, labels, statistics), ``dp`` (order-constrained alignment),
``models`` (weakly supervised step classifiers), ``narration`` (text constraints), ``order``
(actionness by temporal order verification), ``discrim`` (actionness by discrimination and
post-processing), ``proposals`` (actionness grouping + NMS), ``metrics`` and ``synthetic``.
The methods and reference numbers are in shared/spec/temporal.md.
"""

from collections.abc import Callable

ProgressFn = Callable[[str, int, int], None]
"""``progress(description, done, total)``: how long loops report progress without knowing about rich."""
