"""The price pages on the worker's web port: /prices, /apps/<id>, /changes and their JSON twins.

``query`` checks parameters and builds the SQL, ``chart`` lays out the history charts and
``render`` turns both into HTML (all pure); ``views`` holds the thin aiohttp handlers and the
pages' own MySQL reader.
"""
