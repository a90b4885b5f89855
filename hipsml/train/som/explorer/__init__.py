"""Static files of the SOM explorer page (index.html, explorer.js, explorer.css), copied by :mod:`hipsml.train.som._explorer`."""
