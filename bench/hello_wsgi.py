"""The machine's limit for ``bench/registration.py``: Flask answering a small JSON document,
served by gunicorn with the same settings as the HIS (no database, no auth)."""

from __future__ import annotations

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/hello")
def hello():
    return jsonify(hello="world")
