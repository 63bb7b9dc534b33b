"""Fixtures shared by the FHIR API tests."""

import pytest

from his.models import Role
from tests.factories import UserFactory

FHIR_JSON = "application/fhir+json"


@pytest.fixture
def staff_token(db_session, login_token):
    """A doctor's token of /api/v1/auth/token: staff may use the FHIR API with it."""
    user = UserFactory(roles=(Role.DOCTOR,))
    return login_token(user.username)["Authorization"].removeprefix("Bearer ")


@pytest.fixture
def fhir_get(client, staff_token):
    def get(path, token=None, **kwargs):
        headers = {"Authorization": f"Bearer {token or staff_token}", "Accept": FHIR_JSON}
        headers.update(kwargs.pop("headers", {}))
        return client.get(path, headers=headers, **kwargs)

    return get
