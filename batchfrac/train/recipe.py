"""The training recipe's numbers (the paper's, and what batchfrac adds), in one place.

Keras-free, so the CLI can show them as option defaults without importing TensorFlow;
``training/paper_recipe.json`` states the same values for people (a test compares them).
"""

from __future__ import annotations

#: Adam learning rate of the paper's transfer recipe (last 20 layers + classifier).
LEARNING_RATE = 1e-4
#: Adam learning rate when a whole B0 trains from random weights (no ImageNet weights).
END_TO_END_LEARNING_RATE = 1e-3
DEFAULT_EPOCHS = 20
DEFAULT_BATCH_SIZE = 32
DEFAULT_IMAGE_SIZE = 224
#: Epochs without a better validation loss before training stops (batchfrac's addition).
EARLY_STOPPING_PATIENCE = 3
