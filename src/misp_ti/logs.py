"""Logging setup: text or JSON lines on stderr, secrets redacted everywhere."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

import orjson

from misp_ti.redact import REDACTED


class RedactSecrets(logging.Filter):
    """Replace every known secret value in a record's message and arguments.

    Defence in depth: no code should log a secret, and if one does (a library
    echoing a header, say) this filter still keeps it out of the output.
    """

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = self.scrub(record.getMessage())
            record.msg, record.args = message, None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "@timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text or record.exc_info:
            data["error.stack_trace"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return orjson.dumps(data).decode()


def setup_logging(*, level: str = "info", fmt: str = "text", secrets: Iterable[str] = (), quiet: bool = False) -> logging.Logger:
    logger = logging.getLogger("misp_ti")
    for handler in list(logger.handlers):
        if getattr(handler, "_misp_ti", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._misp_ti = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    redact = RedactSecrets(secrets)
    handler.addFilter(redact)
    logger.addHandler(handler)
    logger.setLevel("WARNING" if quiet else level.upper())
    logger.propagate = False
    # libraries log through their own loggers; the same filter guards them
    for name in ("httpx", "httpcore", "elastic_transport", "elasticsearch"):
        lib = logging.getLogger(name)
        lib.addFilter(redact)
        lib.handlers = [handler] if level == "debug" else []
        lib.setLevel("DEBUG" if level == "debug" else "WARNING")
        lib.propagate = False
    return logger
