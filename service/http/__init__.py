"""The HTTP edge: the Flask app factory, its error mapping and the gunicorn server.

Everything that knows about HTTP lives here, so the protocol, data-access and clinical layers
below it stay free of Flask and can be tested without a server.
"""
