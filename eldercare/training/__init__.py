"""Training and evaluation of the detectors: on the simulators' homes and wearables, and on real
recordings (public datasets read from a folder); ``eldercare models`` is its command group.

Kept apart from :mod:`eldercare.models`: the detectors there are pure numpy and never import this
package or the simulators (an import contract in pyproject.toml); this one reads dataset files,
drives the simulators, runs cross-validation and needs scikit-learn.
"""
