"""Creating and changing staff accounts."""

from __future__ import annotations

from collections.abc import Iterable

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from his.errors import Conflict, NotFound, ValidationFailed
from his.models import Facility, Role, User, UserRole
from his.services import passwords
from his.services.auth import find_user, hash_password, normalise_username
from his.text import clean


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    full_name: str,
    facility_code: str,
    roles: Iterable[Role | str],
    min_password_length: int = passwords.DEFAULT_MIN_LENGTH,
    check_password: bool = True,
) -> User:
    """A new account. The password must pass the policy (his.services.passwords) unless
    ``check_password`` is false: only the demo loader, whose published password is "demo"."""
    errors: dict[str, list[str]] = {}
    name = normalise_username(username)
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._-" for c in name):
        errors["username"] = [str(_l("Use 1–64 letters, digits, dots, dashes or underscores."))]
    if check_password:
        weak = passwords.problems(password, username=name, min_length=min_password_length)
        if weak:
            errors["password"] = weak
    try:
        role_set = sorted({Role(r) for r in roles})
    except ValueError:
        errors["roles"] = [str(_l("Unknown role."))]
        role_set = []
    if not role_set and "roles" not in errors:
        errors["roles"] = [str(_l("Give the user at least one role."))]
    if errors:
        raise ValidationFailed(str(_l("The user could not be created.")), errors=errors)
    facility = session.scalar(select(Facility).where(Facility.code == facility_code))
    if facility is None:
        raise NotFound(str(_l("No facility has this code.")), errors={"facility": [facility_code]})
    if find_user(session, name) is not None:
        raise Conflict(str(_l("This username is taken.")), errors={"username": [name]})
    user = User(
        username=name,
        full_name=clean(full_name),
        password_hash=hash_password(password),
        facility_id=facility.id,
        role_rows=[UserRole(role=r) for r in role_set],
    )
    session.add(user)
    session.flush()
    return user
