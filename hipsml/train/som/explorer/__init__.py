"""Static files of the SOM explorer page (index.html, explorer.js, explorer.css).

:mod:`hipsml.train.som._explorer` copies them into every explorer folder.
"""
