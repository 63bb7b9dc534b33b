"""Business rules. Plain Python taking an explicit SQLAlchemy ``Session``: no Flask request
objects, so the web app, the CLI and the MLLP listener call the same code."""
