"""Temporal stage: step localization and actionness on per-clip features ``X[T, D]``.

Library: ``data`` (CrossTask I/O, labels, statistics; ``DataError`` is an input error), ``dp``
(order-constrained alignment), ``models`` (weakly supervised step classifiers), ``narration`` (text
constraints), ``order`` (actionness by temporal order verification), ``discrim`` (actionness by
discrimination and fusion), ``procedure`` (key-step
discovery without step lists), ``groundedness`` (which narration is about what is shown), ``metrics``,
``synthetic`` and ``io`` (model files: safetensors + JSON).

Stage entry points, each owning the artefacts it writes: ``features`` (clip features of a scene's videos),
``actionness`` (their actionness), ``video_steps`` (their step timelines and evaluation), ``crosstask``
(CrossTask-format folders). Progress callbacks are ``recon.io.ProgressFn``. The methods and reference numbers
are in shared/spec/temporal.md.
"""
