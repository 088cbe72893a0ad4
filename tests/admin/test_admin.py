"""Admin cache pages: permissions, the overview's figures, the inspector and its actions."""

from __future__ import annotations

import itertools
import time

import psycopg
import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.urls import reverse

from django_cachestrat import sampling, stats
from django_cachestrat.breaker import breaker
from django_cachestrat.models import CounterBatch, DeadLetter
from django_cachestrat.overview import Server, is_worth_caching
from django_cachestrat.plan import plan_for
from tests.factories import ProfileFactory, TeamFactory
from tests.testapp.models import Profile, Team

pytestmark = pytest.mark.django_db

OVERVIEW = "admin:django_cachestrat_cache_overview"
INSPECT = "admin:django_cachestrat_cache_inspect"
ACT = "admin:django_cachestrat_cache_act"
VIEW = "django_cachestrat.view_counterbatch"
CHANGE = "django_cachestrat.change_counterbatch"
_names = itertools.count()


@pytest.fixture(autouse=True)
def fresh_stats():
    stats.reset()


def login(*perms: str, staff: bool = True, enforce_csrf: bool = False) -> Client:
    user = User.objects.create_user(f"staff{next(_names)}", password="pw", is_staff=staff)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client(enforce_csrf_checks=enforce_csrf)
    client.force_login(user)
    return client


def inspect_url(model: str = "testapp.profile", pk: object = "") -> str:
    return f"{reverse(INSPECT)}?model={model}&pk={pk}"


def cached_profile(**fields):
    profile = ProfileFactory(**fields)
    Profile.cached.get(pk=profile.pk)
    return profile


def row_key(pk):
    return plan_for(Profile).keys.row(pk)


# --- permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize("page", [OVERVIEW, INSPECT])
def test_anonymous_is_sent_to_the_login_page(client, page):
    response = client.get(reverse(page))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_users_who_are_not_staff_are_sent_to_the_login_page():
    response = login(VIEW, CHANGE, staff=False).get(reverse(OVERVIEW))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("page", [OVERVIEW, INSPECT])
def test_staff_without_the_permission_is_refused(page):
    assert login().get(reverse(page)).status_code == 403


@pytest.mark.parametrize("perm", [VIEW, CHANGE])
@pytest.mark.parametrize("page", [OVERVIEW, INSPECT])
def test_view_or_change_permission_shows_the_pages(page, perm):
    response = login(perm).get(reverse(page))
    assert response.status_code == 200
    assert (b"Invalidate this row" in response.content) is False  # no row chosen yet


def test_view_only_sees_no_buttons_and_cannot_act(redis_client):
    profile = cached_profile()
    client = login(VIEW)
    page = client.get(inspect_url(pk=profile.pk))
    assert page.status_code == 200 and b"Cached row" in page.content
    assert b"Invalidate this row" not in page.content
    for action in ("invalidate", "flush", "flush_counters"):
        data = {"model": "testapp.profile", "pk": profile.pk, "action": action}
        assert client.post(reverse(ACT), data).status_code == 403
    assert redis_client.exists(row_key(profile.pk)) == 1


def test_anonymous_and_staff_without_permission_cannot_act(client, redis_client):
    profile = cached_profile()
    data = {"model": "testapp.profile", "pk": profile.pk, "action": "invalidate"}
    assert client.post(reverse(ACT), data).status_code == 302  # to the login page
    assert login().post(reverse(ACT), data).status_code == 403
    assert redis_client.exists(row_key(profile.pk)) == 1


def test_actions_are_post_only_and_need_the_csrf_token(redis_client):
    profile = cached_profile()
    data = {"model": "testapp.profile", "pk": profile.pk, "action": "invalidate"}
    assert login(CHANGE).get(reverse(ACT), data).status_code == 405
    assert login(CHANGE, enforce_csrf=True).post(reverse(ACT), data).status_code == 403
    assert redis_client.exists(row_key(profile.pk)) == 1


def test_batches_and_dead_letters_are_read_only():
    client = login(VIEW, CHANGE, "django_cachestrat.add_counterbatch")
    assert client.get(reverse("admin:django_cachestrat_counterbatch_add")).status_code == 403
    listing = client.get(reverse("admin:django_cachestrat_counterbatch_changelist"))
    assert listing.status_code == 200 and reverse(OVERVIEW).encode() in listing.content


# --- the "Cache" entry of the admin index -----------------------------------------------------

CACHE_ENTRY = "admin:django_cachestrat_cache_changelist"


def index_entries(client: Client, url: str) -> dict[str, str]:
    """The index's model names of the app, and where each one links."""
    app = [a for a in client.get(url).context["app_list"] if a["app_label"] == "django_cachestrat"]
    return {m["name"]: m.get("admin_url", "") for m in (app[0]["models"] if app else [])}


@pytest.mark.parametrize("perm", [VIEW, CHANGE])
def test_the_admin_index_has_a_cache_entry_leading_to_the_overview(perm):
    client = login(perm)
    for url in (reverse("admin:index"), reverse("admin:app_list", args=["django_cachestrat"])):
        assert index_entries(client, url)["Cache"] == reverse(OVERVIEW)
    assert reverse(CACHE_ENTRY) == reverse(OVERVIEW) == "/admin/django_cachestrat/cache/"
    overview = client.get(reverse(CACHE_ENTRY))
    assert overview.status_code == 200
    assert reverse(INSPECT).encode() in overview.content  # the overview leads to the inspector


def test_without_the_permission_there_is_no_cache_entry():
    assert "Cache" not in index_entries(login(), reverse("admin:index"))
    assert login().get(reverse(CACHE_ENTRY)).status_code == 403


def test_the_cache_entry_adds_no_permission_and_no_table():
    assert not Permission.objects.filter(content_type__app_label="django_cachestrat").exclude(
        content_type__model__in=["counterbatch", "deadletter", "pendinginvalidation"]
    )
    assert "django_cachestrat_cache" not in connection.introspection.table_names()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("counterbatch/cache/", OVERVIEW),
        ("counterbatch/cache/inspect/?model=testapp.profile&pk=7", INSPECT),
    ],
)
def test_the_first_urls_redirect_to_the_cache_entry(old, new):
    response = login(VIEW).get(f"/admin/django_cachestrat/{old}")
    query = old.partition("?")[2]
    assert response.status_code == 302
    assert response["Location"] == reverse(new) + (f"?{query}" if query else "")


@pytest.mark.parametrize("old", ["counterbatch/cache/", "counterbatch/cache/inspect/"])
def test_the_first_urls_redirect_only_those_who_may_see_the_pages(old):
    assert login().get(f"/admin/django_cachestrat/{old}").status_code == 403


def test_the_first_urls_keep_their_permissions(client, redis_client):
    profile = cached_profile()
    old_act = "/admin/django_cachestrat/counterbatch/cache/act/"
    data = {"model": "testapp.profile", "pk": profile.pk, "action": "invalidate"}
    response = client.get("/admin/django_cachestrat/counterbatch/cache/")
    assert response["Location"].startswith(reverse("admin:login"))
    assert client.post(old_act, data).status_code == 302  # to the login page
    assert login(VIEW).post(old_act, data).status_code == 403
    assert redis_client.exists(row_key(profile.pk)) == 1
    assert login(CHANGE).post(old_act, data).status_code == 302  # done, back to the inspector
    assert redis_client.exists(row_key(profile.pk)) == 0


# --- inspector ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["nosuch.model", "testapp.tag", "../../etc"])
def test_a_model_that_is_not_cached_is_not_found(model):
    client = login(CHANGE)
    assert client.get(inspect_url(model, 1)).status_code == 404
    data = {"model": model, "pk": "1", "action": "invalidate"}
    assert client.post(reverse(ACT), data).status_code == 404


@pytest.mark.parametrize("pk", ["abc", "1.5", str(10**30)])
def test_a_malformed_pk_is_a_form_error(pk):
    response = login(VIEW).get(inspect_url(pk=pk))
    assert response.status_code == 200
    assert response.context["form"].errors["pk"]
    assert "report" not in response.context


def test_the_inspector_shows_the_cached_row_beside_the_database(redis_client):
    profile = cached_profile(age=40)
    response = login(VIEW).get(inspect_url(pk=profile.pk))
    report = response.context["report"]
    assert (report.state, report.in_database, report.in_sync) == ("row", True, True)
    assert 0 < report.ttl_ms <= 3600 * 1.1 * 1000
    assert report.lease_ttl_ms is None
    ages = [f for f in report.fields if f.name == "age"]
    assert (ages[0].cached, ages[0].database, ages[0].differs) == ("40", "40", False)
    assert row_key(profile.pk).encode() in response.content


@pytest.mark.django_db(transaction=True)  # other connections see committed rows only
def test_a_write_outside_django_shows_as_a_difference():
    profile = cached_profile(age=1)
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("UPDATE testapp_profile SET age = 77 WHERE id = %s", [profile.pk])
    response = login(VIEW).get(inspect_url(pk=profile.pk))
    report = response.context["report"]
    assert report.in_sync is False and report.differing == ["age"]
    assert b'class="differs"' in response.content


@pytest.mark.django_db(transaction=True)  # pending increments: outside a test's transaction
def test_lease_pending_increments_and_lookup_keys_are_shown(redis_client):
    profile = cached_profile(username="jane")
    Profile.cached.get(username="jane")
    Profile.cached.incr(profile.pk, "likes", by=3)
    key = row_key(profile.pk)
    redis_client.set(plan_for(Profile).keys.lease(key), b"token", px=4000)
    report = login(VIEW).get(inspect_url(pk=profile.pk)).context["report"]
    assert 0 < report.lease_ttl_ms <= 4000
    assert [(f.name, f.pending) for f in report.fields if f.pending] == [("likes", 3)]
    ((field, state, points_to),) = [(x.field, x.state, x.points_to) for x in report.lookups]
    assert (field, state, points_to) == ("username", "pointer", str(profile.pk))


def test_a_row_never_read_and_a_missing_row():
    profile = ProfileFactory()
    client = login(VIEW)
    report = client.get(inspect_url(pk=profile.pk)).context["report"]
    assert (report.state, report.in_sync, report.ttl_ms) == ("missing", None, None)
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(pk=987654)
    report = client.get(inspect_url(pk=987654)).context["report"]
    assert (report.state, report.in_database, report.in_sync) == ("absent", False, True)


# --- actions --------------------------------------------------------------------------------


def test_invalidate_drops_the_row_and_its_lookup_keys(redis_client):
    profile = cached_profile(username="olga")
    Profile.cached.get(username="olga")
    lookup = plan_for(Profile).keys.lookup("username", "olga")
    client = login(CHANGE)
    data = {"model": "testapp.profile", "pk": str(profile.pk), "action": "invalidate"}
    response = client.post(reverse(ACT), data, follow=True)
    assert redis_client.exists(row_key(profile.pk), lookup) == 0
    assert response.redirect_chain[-1][0] == inspect_url(pk=profile.pk)
    assert f"Invalidated testapp.profile #{profile.pk}" in response.content.decode()
    assert response.context["report"].state == "missing"


def test_invalidate_needs_a_pk():
    data = {"model": "testapp.profile", "pk": "", "action": "invalidate"}
    assert login(CHANGE).post(reverse(ACT), data).status_code == 400


def test_flush_makes_every_row_of_the_model_a_miss(redis_client):
    profile = cached_profile()
    team = TeamFactory()
    Team.cached.get(pk=team.pk)
    before = redis_client.get(plan_for(Profile).keys.generation)
    team_generation = redis_client.get(plan_for(Team).keys.generation)
    data = {"model": "testapp.profile", "action": "flush"}
    response = login(CHANGE).post(reverse(ACT), data, follow=True)
    assert "Flushed testapp.profile" in response.content.decode()
    assert redis_client.get(plan_for(Profile).keys.generation) not in (None, before)
    report = login(VIEW).get(inspect_url(pk=profile.pk)).context["report"]
    assert report.state == "old_generation" and not report.is_cached
    # other models untouched
    assert redis_client.get(plan_for(Team).keys.generation) == team_generation


@pytest.mark.django_db(transaction=True)  # pending increments: outside a test's transaction
def test_flush_counters_applies_pending_increments_now(redis_client):
    profile = ProfileFactory(likes=5)
    Profile.cached.incr(profile.pk, "likes", by=4)
    data = {"model": "testapp.profile", "action": "flush_counters"}
    response = login(CHANGE).post(reverse(ACT), data, follow=True)
    assert "1 batch(es), 1 row(s), 4 increment(s)" in response.content.decode()
    assert Profile.objects.get(pk=profile.pk).likes == 9
    assert CounterBatch.objects.filter(model="testapp.profile").count() == 1


def test_redis_unavailable_is_reported_not_raised():
    profile = cached_profile()
    breaker.open_until = time.monotonic() + 60
    client = login(CHANGE)
    assert b"Redis is unavailable" in client.get(reverse(OVERVIEW)).content
    assert b"Redis is unavailable" in client.get(inspect_url(pk=profile.pk)).content


# --- overview -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # pending increments: outside a test's transaction
def test_the_overview_shows_redis_models_and_write_behind(redis_client):
    profile = cached_profile()
    Profile.cached.get(pk=profile.pk)
    gone = ProfileFactory()
    Profile.cached.incr(gone.pk, "likes", by=2)
    Profile.cached.incr(profile.pk, "likes", by=1)
    Profile.objects.filter(pk=gone.pk).delete()
    client = login(CHANGE)
    client.post(reverse(ACT), {"model": "testapp.profile", "action": "flush_counters"})
    Profile.cached.incr(profile.pk, "likes", by=1)  # pending after the flush
    response = client.get(reverse(OVERVIEW))
    figures = response.context["figures"]
    content = response.content.decode()
    assert figures.server.version == redis_client.info()["redis_version"] in content
    (row,) = [m for m in figures.models if m.label == "testapp.profile"]
    assert row.keys_exact and row.keys == len(list(redis_client.scan_iter("cs:testapp.profile:*")))
    assert row.memory > 0
    assert (row.summary.counts["hits"], row.summary.counts["misses"]) == (1, 1)
    (wb,) = figures.write_behind
    assert (wb.pending, wb.in_flight, wb.never_flushed) == (1, 0, False)
    assert 0 <= wb.waiting_s < 60 and not wb.is_stalled
    batches = figures.batches  # one per stripe holding increments
    assert (sum(b.rows for b in batches), sum(b.dead_letters for b in batches)) == (1, 1)
    assert [(d.pk_value, d.delta) for d in figures.dead_letters] == [(str(gone.pk), 2)]
    assert DeadLetter.objects.count() == figures.dead_letter_count == 1


def test_the_overview_advises_against_caching_a_model_as_fast_as_its_database():
    counted = stats.stats_for("testapp.team")
    counted.hits = 50
    counted.hit_times.extend([100.0] * 50)
    counted.fill_times.extend([150.0] * 50)  # a fill costs 1.5 hits
    response = login(VIEW).get(reverse(OVERVIEW))
    (team,) = [m for m in response.context["figures"].models if m.label == "testapp.team"]
    assert team.worth_caching is False
    assert "Not worth caching" in response.content.decode()


def summary(hits=45, misses=5, hit_us=100.0, fill_us=300.0):
    return stats.Summary("x", {"hits": hits, "misses": misses}, hit_us, fill_us)


def test_the_advice_rule():
    assert is_worth_caching(summary(fill_us=199.0)) is False
    assert is_worth_caching(summary(fill_us=200.0)) is True
    assert is_worth_caching(summary(hits=14)) is None  # too few reads to judge
    assert is_worth_caching(summary(fill_us=None)) is None
    assert is_worth_caching(None) is None


def server(maxmemory=1000, used=100, policy="volatile-lru"):
    return Server("7.2", used, maxmemory, policy, 0, 0, 0)


def test_server_warnings():
    assert server().warnings == []
    assert server(used=749).warnings == []
    assert server(used=750).warnings == ["Redis uses 75% of maxmemory."]
    assert "maxmemory is not set" in server(maxmemory=0).warnings[0]
    assert "noeviction" in server(policy="noeviction").warnings[0]
    assert server(policy="allkeys-lru").warnings == []  # evicted rows or generations: misses
    risky = Server("7.2", 100, 1000, "allkeys-lru", 0, 0, 0, eviction_risk="increments lost")
    assert risky.warnings == ["increments lost"]  # only pending increments are at risk


def test_key_counts_are_estimated_by_a_bounded_scan(redis_client, monkeypatch):
    pipe = redis_client.pipeline()
    for i in range(600):
        pipe.set(f"cs:testapp.team:{i}" if i % 2 else f"other:{i}", b"x")
    pipe.execute()
    exact = sampling.sample_keys(["cs:testapp.team:"])
    assert (exact.complete, exact.key_count("cs:testapp.team:")) == (True, 300)
    monkeypatch.setattr(sampling, "SCAN_COUNT", 50)
    monkeypatch.setattr(sampling, "SCAN_ROUNDS", 3)
    partial = sampling.sample_keys(["cs:testapp.team:"])
    assert not partial.complete and 100 <= partial.examined < 600
    assert 150 < partial.key_count("cs:testapp.team:") < 450  # ≈ 300, from a sample of ~150
    assert partial.bytes("cs:testapp.team:") > 0


# --- the ModelAdmin mixin -------------------------------------------------------------------


def change_url(profile):
    return reverse("admin:testapp_profile_change", args=[profile.pk])


def test_the_change_page_shows_the_cache_status_box():
    profile = cached_profile()
    client = login(VIEW, CHANGE, "testapp.change_profile")
    response = client.get(change_url(profile))
    box = response.context["cachestrat"]
    assert box["report"].is_cached and box["report"].in_sync
    content = response.content.decode()
    assert 'id="cache-status"' in content and 'id="profile_form"' in content
    assert inspect_url(pk=profile.pk).replace("&", "&amp;") in content
    assert "Invalidate cache" in content


def test_the_box_needs_the_cache_view_permission():
    profile = cached_profile()
    response = login("testapp.change_profile").get(change_url(profile))
    assert response.status_code == 200 and b'id="cache-status"' not in response.content


@pytest.mark.django_db(transaction=True)  # other connections see committed rows only
def test_the_box_shows_a_row_not_in_sync():
    profile = cached_profile(age=3)
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("UPDATE testapp_profile SET age = 4 WHERE id = %s", [profile.pk])
    response = login(VIEW, "testapp.change_profile").get(change_url(profile))
    assert 'id="cache-status-sync"><strong' in response.content.decode()
    assert "age differs" in response.content.decode()


def test_the_invalidate_action_drops_the_selected_rows(redis_client):
    profiles = [cached_profile() for _ in range(3)]
    client = login(CHANGE, "testapp.view_profile", "testapp.change_profile")
    changelist = reverse("admin:testapp_profile_changelist")
    choices = dict(client.get(changelist).context["action_form"].fields["action"].choices)
    assert choices["invalidate_cache"] == "Invalidate cache for selected profiles"
    data = {"action": "invalidate_cache", "_selected_action": [p.pk for p in profiles[:2]]}
    response = client.post(changelist, data, follow=True)
    assert "Invalidated the cache of 2 row(s)." in response.content.decode()
    assert [redis_client.exists(row_key(p.pk)) for p in profiles] == [0, 0, 1]


def test_the_action_is_offered_only_with_the_change_permission(redis_client):
    profile = cached_profile()
    client = login(VIEW, "testapp.view_profile", "testapp.change_profile")
    changelist = reverse("admin:testapp_profile_changelist")
    form = client.get(changelist).context["action_form"]  # None: no action left at all
    assert form is None or "invalidate_cache" not in dict(form.fields["action"].choices)
    client.post(changelist, {"action": "invalidate_cache", "_selected_action": [profile.pk]})
    assert redis_client.exists(row_key(profile.pk)) == 1
