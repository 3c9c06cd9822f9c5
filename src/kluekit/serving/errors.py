"""Client errors of the HTTP API: a status code and a message that says what to change."""

from __future__ import annotations


class RequestError(Exception):
    """Bad client input; the app answers ``status`` with ``{"detail": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def invalid(message: str) -> RequestError:
    """422: the request is well-formed but a value is unusable (empty text, unknown column, k too large)."""
    return RequestError(422, message)


def too_large(message: str) -> RequestError:
    """413: over a size limit (upload bytes, rows)."""
    return RequestError(413, message)


def unavailable(message: str) -> RequestError:
    """409: the server was not started with what the request needs (a corpus, a cross-encoder)."""
    return RequestError(409, message)


def overloaded(message: str) -> RequestError:
    """503: too many requests are waiting for the model (--max-queue); retry shortly."""
    return RequestError(503, message)


def timed_out(message: str) -> RequestError:
    """504: the request's model work did not finish within --request-timeout."""
    return RequestError(504, message)
