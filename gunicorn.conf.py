"""gunicorn settings, read from the same validated HIS_* variables as the app."""

import os

from his.config import Settings

_settings = Settings.from_env()  # fail before forking when the configuration is wrong

bind = f"{_settings.host}:{_settings.port}"
workers = _settings.web_workers
threads = _settings.web_threads
worker_class = "gthread"
timeout = 60
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so a slow leak never takes a station down.
max_requests = 2000
max_requests_jitter = 200
accesslog = None  # the app logs each request itself, without query strings
errorlog = "-"
logger_class = "his.gunicorn_logger.GunicornLogger"
loglevel = _settings.log_level.lower()
# No runtime control socket in the home directory: operators use signals and the health checks.
control_socket_disable = True
# Heartbeat files in RAM: a slow or full disk must not get workers killed as hung.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
