"""The supervised visual defect classifier: data, network, training (``python -m
training.visual.train``) and evaluation with its model card (``python -m training.visual.evaluate``)."""
