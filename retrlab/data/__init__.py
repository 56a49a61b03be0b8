"""Retrieval datasets: the shared RetrievalData shape, the wiki-car builder, the BEIR loader."""
from retrlab.data.beir import download_beir, load_beir
from retrlab.data.dataset import RetrievalData
from retrlab.data.wikicar import data_card, format_card, load_wikicar

__all__ = ["RetrievalData", "data_card", "download_beir", "format_card", "load_beir", "load_wikicar"]
