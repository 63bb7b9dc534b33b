"""Reading the message a validator refuses a value with."""

import pytest
from flask_babel.speaklater import LazyString

from his.errors import InvalidValue


def invalid_message(func, *args, **kwargs) -> str:
    """The text of the InvalidValue ``func`` raises; fails if it raises none. The message
    must be a lazy string, so it is shown in the reader's language."""
    with pytest.raises(InvalidValue) as excinfo:
        func(*args, **kwargs)
    assert isinstance(excinfo.value.message, LazyString)
    return str(excinfo.value.message)
