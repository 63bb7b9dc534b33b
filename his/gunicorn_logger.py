"""gunicorn's own lines (worker boots, timeouts, crashes) through our JSON pipeline, so an
operator reads one log format. Named in gunicorn.conf.py as ``logger_class``."""

from gunicorn.glogging import Logger

from his.config import Settings
from his.logging import configure_logging


class GunicornLogger(Logger):
    def setup(self, cfg):
        super().setup(cfg)
        settings = Settings.from_env()
        configure_logging(settings.log_format, settings.log_level)
        self.error_log.handlers[:] = []
        self.error_log.propagate = True
