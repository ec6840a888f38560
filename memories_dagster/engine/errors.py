"""Errors of the integration engine; each message names what is wrong and where."""


class IntegrationError(ValueError):
    """The data or the spec do not allow the integration to go on."""
