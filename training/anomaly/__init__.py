"""The good-parts-only visual anomaly model: evaluation product families (development and
held out), the comparison of methods, and the model card.

The model itself is learnt by the runtime (``edge-inspector learn visual``, runtime dependencies
only); this package measures it honestly: families that nothing was tuned on, scored per family.
"""
