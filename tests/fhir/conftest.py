"""Fixtures shared by the FHIR API tests."""

import pytest

from his.models import Role
from tests.factories import UserFactory

FHIR_JSON = "application/fhir+json"


@pytest.fixture
def staff_token(db_session, login_token):
    """A token of /api/v1/auth/token: staff may use the FHIR API with it. A staff token's
    scopes follow the user's roles; a doctor who is also a cashier and an integration
    reads every type but the audit trail (claims: cashier; export groups: integration)."""
    user = UserFactory(roles=(Role.DOCTOR, Role.CASHIER, Role.INTEGRATION))
    return login_token(user.username)["Authorization"].removeprefix("Bearer ")


@pytest.fixture
def fhir_get(client, staff_token):
    def get(path, token=None, **kwargs):
        headers = {"Authorization": f"Bearer {token or staff_token}", "Accept": FHIR_JSON}
        headers.update(kwargs.pop("headers", {}))
        return client.get(path, headers=headers, **kwargs)

    return get
