"""SynthME: synthetic long videos of real face photos with labelled micro/macro-expressions.

Modules: :mod:`.stats` (real timing statistics -> stats.json), :mod:`.faces`
(face assets, identity splits), :mod:`.aus` (action units as displacement
fields), :mod:`.timeline` (events and distractors per video), :mod:`.render`
(scenes and frames), :mod:`.generate` (sets on disk), :mod:`.demo` (the demo
clip), :mod:`.calibrate` (flow magnitudes vs DESIGN.md §8). CLI:
``python -m training.synth``; see training/synth/README.md.
"""
