"""Training and evaluation of the detectors on real recordings (public datasets read from a folder).

Kept apart from :mod:`eldercare.models`: the detectors there are pure numpy and never import this
package; this one reads dataset files, runs cross-validation and needs scikit-learn.
"""
