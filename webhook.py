"""WSGI entry point: ``flask --app webhook run`` or ``gunicorn webhook:app``."""

import gc

from bot import create_app
from bot.pipeline import warm_up

app = create_app()
warm_up(app)

# What the app loaded at start (legal parameters, commune names, the questionnaire, the libraries) lives as long
# as the process: keep it out of the garbage collector's full passes, each of which would otherwise walk all of
# it (tens of milliseconds, a stall for every request queued behind it).
gc.freeze()
