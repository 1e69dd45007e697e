"""WSGI entry point: ``flask --app webhook run`` or ``gunicorn webhook:app``."""

from bot import create_app

app = create_app()
