"""The acoustic models' data, training and evaluation.

- :mod:`~training.acoustic.plant`: machines of several kinds (fan, pump, compressor, gearbox, …)
  living a normal life (idle, load, speed drift, valves, starts and stops) and faults the
  classifier has no label for; development kinds for tuning, evaluation kinds never tuned on;
- :mod:`~training.acoustic.faults` and :mod:`~training.acoustic.audibility`: those faults, and
  the one measure of how audible a fault is that every data set and card uses;
- :mod:`~training.acoustic.nuisances`: harmless plant sounds (hiss, valve puffs, clatter, speech,
  beeps, other machines' hum, level and channel changes), a training set and a held-out set of
  other kinds;
- the classifier (``python -m training.acoustic.train`` / ``.evaluate``) and the normal-only
  model's evaluation (``python -m training.acoustic.evaluate_anomaly``).
"""
