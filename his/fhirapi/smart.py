"""SMART Backend Services: machine clients, the token endpoint, discovery.

(Filled in by the SMART work; until then no backend-client token is recognised.)
"""

from __future__ import annotations

from sqlalchemy.orm import Session


def access_for_token(session: Session, token: str):
    """The FhirAccess of a backend client's access token, or None when it is not one."""
    return None
