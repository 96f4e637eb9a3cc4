"""Training one head of a bundle with the paper's recipe (``batchfrac train``).

:mod:`.trainer` (the steps of one run) uses :mod:`.plan` (which networks, from which
weights), :mod:`.batches` and :mod:`.augment` (Keras batches), :mod:`.auxiliary` (the
abnormality task while the router defines the trunk), :mod:`.loop` (epochs, early
stopping), :mod:`.head_meta` (what bundle.json records), :mod:`.recipe` (the numbers) and
:mod:`.progress`.
"""
