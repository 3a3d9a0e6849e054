"""Errors of the development stack: each one says, on one line, what to do."""


class StackError(RuntimeError):
    """A server could not be fetched, installed or started; the message says what to do."""
