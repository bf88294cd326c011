"""Every error the project raises on purpose, in one place.

Each is a ``ValueError`` whose message names what is at fault (file, key, line, row, column or
setting) and what to do about it, so a user can act on it without reading code. Which class is
raised says where to look: the recipe, the source it names, the rows themselves, the method, or the
champion's files.
"""


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message names the file and the key."""


class SourceError(ValueError):
    """A data or model source that cannot be read; the message says which and what to do."""


class DataError(ValueError):
    """Rows that cannot be used as they are; the message names the column or rows and the fix."""


class MethodError(ValueError):
    """A method setting that cannot work with this model or machine."""


class PromotionError(ValueError):
    """The champion's record cannot be read or its export cannot be scored; the message names the file."""
