"""Errors about the data itself (as opposed to the recipe or the source it names)."""


class DataError(ValueError):
    """Rows that cannot be used as they are; the message names the column or rows and the fix."""
