"""retrlab: learn how dense retrievers are trained, one notebook per technique."""
__version__ = "0.1.0"
