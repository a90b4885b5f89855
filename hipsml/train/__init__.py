"""Training on hipsml datasets (rotation/flip-invariant SOM and CNN classifiers in JAX).

Not built yet: this package is reserved for the training issue.
"""
