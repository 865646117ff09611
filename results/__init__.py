"""The results store of ``spikeedge bench``: SQLite storage, comparison of runs, CSV export
(standard library only; the HTML report imports matplotlib lazily)."""
