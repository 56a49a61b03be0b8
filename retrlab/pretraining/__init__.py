"""Retrieval-oriented pretraining on a tiny BERT: the shared bench (``bench``) and one module per
method (``ict``, ``hyperlinks``, ``prop``). Import from the submodules directly."""
