"""Every error the project raises on purpose, in one place.

Bad input is a ``ValueError`` whose message names what is at fault (file, key, line, row, column
or setting) and what to do about it, so a user can act on it without reading code; which class is
raised says where to look: the recipe, the source it names, the rows themselves, the method, or the
champion's files. Retrying cannot fix those, so Dagster does not retry them. A launched process
that crashed (:class:`ProcessFailed`) is not bad input: a retry resumes it.
"""


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message names the file and the key."""


class SourceError(ValueError):
    """A data or model source that cannot be read; the message says which and what to do."""


class TemplateError(SourceError):
    """A model's chat template the loss mask cannot be read off (it rewrites earlier turns, or never
    ends an answer with EOS); the message names the template and what it needs."""


class DataError(ValueError):
    """Rows that cannot be used as they are; the message names the column or rows and the fix."""


class MethodError(ValueError):
    """A method setting that cannot work with this model or machine."""


class RewardError(ValueError):
    """A reward function that cannot score: it raised, or returned something that is not a finite
    number; the message names the function, the recipe and the completion it was scoring."""


class PromotionError(ValueError):
    """The champion's record cannot be read or its export cannot be scored; the message names the file."""


class SweepError(ValueError):
    """A sweep with nothing to compare yet; the message says which variants to materialize."""


BAD_INPUT = (RecipeError, SourceError, DataError, MethodError, RewardError)  # what a retry cannot fix


class ProcessFailed(RuntimeError):
    """A process the pipeline launched (the training) exited with an error; its own log says why.
    Not a bad input: a retry (Dagster's ``RetryPolicy``) may succeed, resuming where it stopped."""


class PublishError(RuntimeError):
    """A publishing target that could not be reached or refused the champion; the message names the
    target and its address (never a credential). Not bad input: the local champion stays promoted and
    a re-run publishes it."""
