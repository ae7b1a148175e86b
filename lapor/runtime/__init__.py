"""Runtime wiring shared by the services: settings, broker, database, HTTP, logging.

Nothing here knows about complaints; it only removes boilerplate so that each
service's `wiring.py` reads as the list of what the service subscribes to.
"""
