"""Evaluating a bundle on labelled data (``batchfrac evaluate``): :mod:`.evaluate`
(predictions and the per-bone tables), :mod:`.metrics` (scikit-learn), :mod:`.paper`
(published reference numbers), :mod:`.report` (console, CSV, JSON) and :mod:`.plots`.
Imports none of the training stack.
"""
