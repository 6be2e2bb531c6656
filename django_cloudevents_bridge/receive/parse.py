"""Moved to ``bindings.http`` and ``bindings.jsonformat`` (issue 11).

These names stay importable from here until the code that uses them is updated.
"""

from ..bindings import build, check_extension, check_required, check_string
from ..bindings.http import from_binary, from_request, read_body
from ..bindings.jsonformat import from_batch, from_structured
from ..exceptions import BadEvent, LengthRequired, TooLarge, UnsupportedFormat

__all__ = ["BadEvent", "LengthRequired", "TooLarge", "UnsupportedFormat"]
__all__ += ["from_request", "read_body", "from_binary", "from_structured"]
__all__ += ["from_batch", "build", "check_extension", "check_required", "check_string"]
