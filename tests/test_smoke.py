import pytest

from tests.helpers import assert_cached
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db(transaction=True)


def test_get_by_pk_is_cached():
    p = Profile.objects.create(username="jane")
    got = assert_cached(lambda: Profile.cached.get(pk=p.pk))
    assert got.username == "jane"
