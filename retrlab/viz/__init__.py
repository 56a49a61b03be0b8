"""Plots (matplotlib) and, later, widgets (ipywidgets) over retrlab's pure functions."""
