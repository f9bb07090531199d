"""Build failures: each names the file or value at fault and how to fix it."""


class BuildError(Exception):
    """Root of every model-build failure."""


class SourceMissingError(BuildError):
    """A package that ships source weights is not installed."""


class SourceCorruptError(BuildError):
    """A weight file exists but does not load."""


class NumericsCheckError(BuildError):
    """A built model disagrees with its reference beyond tolerance."""


class ProfileError(BuildError):
    """An unknown target profile or an invalid profile setting."""
