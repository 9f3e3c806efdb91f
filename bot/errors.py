"""The one exception type the command line turns into a single clear line."""


class DomainbotError(Exception):
    """A problem the user can fix: the message says what was expected, what came, and what to do next."""


class AdapterError(DomainbotError):
    """A LoRA adapter that cannot be applied to the model; the model itself is fine."""
