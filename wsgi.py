"""WSGI entry point: ``gunicorn wsgi:app``."""

from his import create_app

app = create_app()
