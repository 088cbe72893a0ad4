"""System checks: each bad setting or ``CacheMeta`` yields its own id and names the problem."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.checks import CheckMessage
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db.models import QuerySet
from django.test import override_settings
from django_redis.cache import RedisCache

from django_cachestrat.checks import check_counters, check_models, check_settings
from django_cachestrat.checks_options import _CHECKS
from django_cachestrat.checks_reads import check_reads
from django_cachestrat.conf import DEFAULTS
from django_cachestrat.options import OPTION_NAMES, is_cached, options_for
from tests.testapp.models import Item, Place, Profile, ProfileProxy, Restaurant, Team

CHECKS_SOURCES = sorted((Path(__file__).parents[2] / "django_cachestrat").glob("checks*.py"))


class CustomRedisCache(RedisCache):  # type: ignore[misc]
    """A project's own subclass of the django-redis backend."""


def ids(errors: list[CheckMessage]) -> list[str]:
    return [e.id.removeprefix("django_cachestrat.") for e in errors if e.id]


def hint(error: CheckMessage) -> str:
    return error.hint or ""


def settings_errors(**cachestrat: Any) -> list[CheckMessage]:
    """``check_settings()`` with ``CACHESTRAT`` set to exactly these keys."""
    with override_settings(CACHESTRAT=cachestrat):
        return check_settings()


def model_errors(label: str, **options: Any) -> list[CheckMessage]:
    """``check_settings()`` with one ``MODELS`` entry holding these options."""
    return settings_errors(MODELS={label: options})


def with_cache(alias: str, config: Any) -> override_settings:
    """Add a cache to ``CACHES`` and point ``CACHE_ALIAS`` at it."""
    caches = {**django_settings.CACHES, alias: config}
    return override_settings(CACHES=caches, CACHESTRAT={"CACHE_ALIAS": alias})


@pytest.fixture(autouse=True)
def _no_wiring_leaks() -> Iterator[None]:
    """Naming models in ``MODELS`` gives them a ``cached`` accessor; take it back after."""
    before = {m for m in apps.get_models() if "cached" in vars(m)}
    yield
    for model in apps.get_models():
        if "cached" in vars(model) and model not in before:
            delattr(model, "cached")


def cache_meta(model: type[Any], monkeypatch: pytest.MonkeyPatch, **options: Any) -> None:
    """Give ``model`` this ``CacheMeta`` for the duration of the test."""
    monkeypatch.setattr(model, "CacheMeta", type("CacheMeta", (), options), raising=False)


# Valid configurations


def test_the_test_settings_are_valid() -> None:
    assert check_settings() == []
    assert check_models() == []
    assert check_counters() == []


def test_no_cachestrat_setting_is_valid(settings: Any) -> None:
    del settings.CACHESTRAT
    assert check_settings() == []


def test_every_default_spelled_out_is_valid() -> None:
    assert settings_errors(**DEFAULTS) == []


@pytest.mark.parametrize(
    "cachestrat",
    [
        {"TIMEOUT": 60.5},
        {"TIMEOUT": 1},
        {"JITTER": 0},
        {"JITTER": 0.5},
        {"JITTER": 0.25},
        {"NEGATIVE_TIMEOUT": 0},
        {"NEGATIVE_TIMEOUT": 0.5},
        {"LEASE_TIMEOUT": 0.1},
        {"LEASE_WAIT": 0},
        {"BREAKER_THRESHOLD": 1},
        {"BREAKER_COOLDOWN": 0},
        {"FAIL_OPEN": False},
        {"KEY_PREFIX": "my-app:v2"},
        {"KEY_PREFIX": "shop.eu_1/prod"},
        {"WRITE_BEHIND": {}},
        {"WRITE_BEHIND": {"INTERVAL": 0.5}},
        {"WRITE_BEHIND": {"INTERVAL": 1, "BATCH_SIZE": 10}},
        {"MODELS": {}},
        {"MODELS": {"*": {}}},
        {"MODELS": {"testapp.*": {"timeout": 60}}},
        {"MODELS": {"TestApp.*": {"timeout": 60.5}}},
        {"MODELS": {"testapp.profile": {"lookups": ["username"]}}},
        {"MODELS": {"Auth.User": {"lookups": ["username"]}}},
        {"MODELS": {"AUTH.USER": {}}},
        {"MODELS": {"auth.User": {"lookups": ("username",), "transparent": True}}},
        {"MODELS": {"testapp.Profile": {"counters": ["age", "score", "likes"]}}},
        {"MODELS": {"testapp.Profile": {"lookups": [], "counters": ()}}},
        {"MODELS": {"testapp.Item": {"strategy": "write_through", "timeout": None}}},
    ],
)
def test_valid_values_pass(cachestrat: dict[str, Any]) -> None:
    assert settings_errors(**cachestrat) == []


# E001 to E005, E015: the CACHESTRAT dict and its scalar values


@pytest.mark.parametrize("value", [None, [], "cs", ("TIMEOUT", 60)])
def test_e001_cachestrat_not_a_dict(value: Any) -> None:
    with override_settings(CACHESTRAT=value):
        errors = check_settings()
    assert ids(errors) == ["E001"]
    assert "CACHESTRAT must be a dict" in errors[0].msg
    assert errors[0].hint


@pytest.mark.parametrize("key", ["TIMEOUTS", "timeout", "REDIS_URL"])
def test_e002_unknown_key(key: str) -> None:
    errors = settings_errors(**{key: 60})
    assert ids(errors) == ["E002"]
    assert repr(key) in errors[0].msg
    assert "TIMEOUT" in hint(errors[0])
    assert "KEY_PREFIX" in hint(errors[0])


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("CACHE_ALIAS", 1, "str"),
        ("KEY_PREFIX", None, "str"),
        ("TIMEOUT", "3600", "int or float"),
        ("TIMEOUT", True, "int or float"),
        ("JITTER", False, "int or float"),
        ("NEGATIVE_TIMEOUT", "30", "int or float"),
        ("FAIL_OPEN", 1, "bool"),
        ("FAIL_OPEN", "yes", "bool"),
        ("MODELS", ["auth.User"], "dict"),
        ("WRITE_BEHIND", [5, 1000], "dict"),
        ("LEASE_TIMEOUT", None, "int or float"),
        ("LEASE_WAIT", "1", "int or float"),
        ("BREAKER_THRESHOLD", 3.0, "int"),
        ("BREAKER_THRESHOLD", True, "int"),
        ("BREAKER_COOLDOWN", "5", "int or float"),
        ("REDIS_REPLICA_WAIT", "0.1", "int or float"),
    ],
)
def test_e003_wrong_type(key: str, value: Any, expected: str) -> None:
    errors = settings_errors(**{key: value})
    assert ids(errors) == ["E003"]
    assert errors[0].msg == (f"CACHESTRAT[{key!r}] must be {expected}, not {type(value).__name__}.")
    assert errors[0].hint == f"Default: {DEFAULTS[key]!r}."


@pytest.mark.parametrize(
    ("key", "value", "bound"),
    [
        ("TIMEOUT", 0, "greater than 0"),
        ("TIMEOUT", -1, "greater than 0"),
        ("LEASE_TIMEOUT", 0.0, "greater than 0"),
        ("BREAKER_THRESHOLD", 0, "greater than 0"),
        ("NEGATIVE_TIMEOUT", -1, "0 or more"),
        ("LEASE_WAIT", -0.5, "0 or more"),
        ("BREAKER_COOLDOWN", -1, "0 or more"),
        ("TIMEOUT", float("inf"), "a finite number"),
        ("TIMEOUT", float("nan"), "a finite number"),
        ("TIMEOUT", 10**400, "a finite number"),  # float() of it would overflow
        ("LEASE_TIMEOUT", float("inf"), "a finite number"),
        ("NEGATIVE_TIMEOUT", float("inf"), "a finite number"),
        ("NEGATIVE_TIMEOUT", float("nan"), "a finite number"),
        ("LEASE_WAIT", float("inf"), "a finite number"),
        ("BREAKER_COOLDOWN", float("nan"), "a finite number"),
        ("BREAKER_COOLDOWN", float("-inf"), "a finite number"),
        ("REDIS_REPLICA_WAIT", 0, "greater than 0"),
        ("REDIS_REPLICA_WAIT", float("inf"), "a finite number"),
    ],
)
def test_e004_number_out_of_range(key: str, value: Any, bound: str) -> None:
    errors = settings_errors(**{key: value})
    assert ids(errors) == ["E004"]
    assert errors[0].msg == f"CACHESTRAT[{key!r}] must be {bound}, not {value!r}."
    assert errors[0].hint == f"Default: {DEFAULTS[key]!r}."


@pytest.mark.parametrize("value", [-0.01, -1, 0.51, 1, float("nan"), float("inf"), float("-inf")])
def test_e005_jitter_out_of_range(value: float) -> None:
    errors = settings_errors(JITTER=value)
    assert ids(errors) == ["E005"]
    assert "between 0 and 0.5" in errors[0].msg
    assert errors[0].hint


@pytest.mark.parametrize(
    "value",
    ["", "my app", "{cs}", "cs{", "cs\n", "a\tb", "a\rb", "cs*", "c?s", "cs[1]", "cs]", "cs\\"],
)
def test_e015_bad_key_prefix(value: str) -> None:
    errors = settings_errors(KEY_PREFIX=value)
    assert ids(errors) == ["E015"]
    assert repr(value) in errors[0].msg
    assert errors[0].msg.endswith("without whitespace, braces or the glob characters *?[]\\.")
    assert "hash tags" in hint(errors[0])
    assert "SCAN" in hint(errors[0])


def test_each_bad_key_reports_its_own_id_in_order() -> None:
    errors = settings_errors(TIMEOUT=0, JITTER=1, BOGUS=1, KEY_PREFIX="", FAIL_OPEN=None)
    assert ids(errors) == ["E004", "E005", "E002", "E015", "E003"]


# E006, E007: the cache alias


def test_e006_cache_alias_not_in_caches() -> None:
    errors = settings_errors(CACHE_ALIAS="redis")
    assert ids(errors) == ["E006"]
    assert "'redis' is not a cache in CACHES" in errors[0].msg
    assert "django_redis.cache.RedisCache" in hint(errors[0])


def test_e007_cache_alias_is_not_django_redis() -> None:
    errors = settings_errors(CACHE_ALIAS="local")
    assert ids(errors) == ["E007"]
    assert "CACHES['local']" in errors[0].msg
    assert "LocMemCache" in errors[0].msg
    assert "django_redis.cache.RedisCache" in hint(errors[0])


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.cache.backends.redis.RedisCache",  # Django's own, not django-redis
        "django.core.cache.backends.dummy.DummyCache",
        "no_such_package.RedisCache",
        "",
    ],
)
def test_e007_other_backends(backend: str) -> None:
    with with_cache("other", {"BACKEND": backend}):
        assert ids(check_settings()) == ["E007"]


@pytest.mark.parametrize(
    "backend",
    [
        "django_redis.cache",  # a module
        "django_redis.get_redis_connection",  # a function
        "django_redis.cache.DJANGO_REDIS_SCAN_ITERSIZE",  # a constant
        None,
        ["django_redis.cache.RedisCache"],
    ],
)
def test_e007_backend_that_is_not_a_class(backend: Any) -> None:
    with with_cache("other", {"BACKEND": backend}):
        errors = check_settings()
    assert ids(errors) == ["E007"]
    assert f"uses {backend!r}" in errors[0].msg


@pytest.mark.parametrize("config", ["redis://127.0.0.1:6379/0", None, {}])
def test_e007_cache_config_without_a_backend(config: Any) -> None:
    with with_cache("other", config):
        assert ids(check_settings()) == ["E007"]


def test_a_subclass_of_the_django_redis_backend_is_accepted() -> None:
    with with_cache("custom", {"BACKEND": f"{__name__}.CustomRedisCache"}):
        assert check_settings() == []


# E008, E016, E017, E009: MODELS entries


@pytest.mark.parametrize(
    "pattern",
    [
        "shop.Product",
        "testapp.Nope",
        "testapp",
        "testapp.Profile.extra",
        "nope.*",
        "",
        "*.*",
        "test_app.Profile",
        ".Profile",
    ],
)
def test_e008_models_names_no_installed_model(pattern: str) -> None:
    errors = settings_errors(MODELS={pattern: {}})
    assert ids(errors) == ["E008"]
    assert repr(pattern) in errors[0].msg
    assert "app_label.ModelName" in hint(errors[0])


def test_e008_models_key_not_a_string() -> None:
    errors = settings_errors(MODELS={Profile: {}})
    assert ids(errors) == ["E008"]


def test_models_labels_match_case_insensitively_as_at_run_time() -> None:
    cachestrat = {"MODELS": {"Auth.User": {"lookups": ["username"]}, "TESTAPP.PLAIN": {}}}
    with override_settings(CACHESTRAT=cachestrat):
        assert check_settings() == []
        assert options_for(User).lookups == ("username",)
        assert is_cached(apps.get_model("testapp", "Plain"))


@pytest.mark.parametrize("pattern", ["testapp.ProfileProxy", "testapp.profileproxy"])
def test_e016_models_names_a_proxy_model(pattern: str) -> None:
    errors = settings_errors(MODELS={pattern: {"timeout": 5}})
    assert ids(errors) == ["E016"]
    assert f"names {pattern!r}, a proxy model" in errors[0].msg
    assert errors[0].hint == "Name the concrete model instead: 'testapp.Profile'."
    assert errors[0].obj is ProfileProxy


def test_e016_because_a_proxy_entry_is_ignored_at_run_time() -> None:
    with override_settings(CACHESTRAT={"MODELS": {"testapp.ProfileProxy": {"timeout": 5}}}):
        assert options_for(ProfileProxy).timeout is None
        assert options_for(Profile).timeout is None


def test_e016_options_of_a_proxy_entry_are_still_checked() -> None:
    errors = settings_errors(MODELS={"testapp.ProfileProxy": {"ttl": 5}})
    assert ids(errors) == ["E016", "E009"]
    errors = settings_errors(MODELS={"testapp.ProfileProxy": None})
    assert ids(errors) == ["E016", "E017"]


def test_star_patterns_do_not_name_proxies() -> None:
    assert settings_errors(MODELS={"*": {}, "testapp.*": {}}) == []


@pytest.mark.parametrize("options", [None, ["username"], "write_through", 60, ("lookups",)])
def test_e017_model_options_not_a_dict(options: Any) -> None:
    errors = settings_errors(MODELS={"testapp.Profile": options})
    assert ids(errors) == ["E017"]
    assert errors[0].msg == (
        f"CACHESTRAT['MODELS']['testapp.Profile'] must be a dict of options, "
        f"not {type(options).__name__}."
    )
    assert "counters, lookups, strategy, timeout, transparent" in hint(errors[0])


@pytest.mark.parametrize("name", ["ttl", "lookup", "Timeout", 1])
def test_e009_unknown_option(name: Any) -> None:
    errors = settings_errors(MODELS={"testapp.Profile": {name: 60}})
    assert ids(errors) == ["E009"]
    assert f"unknown option {name!r}" in errors[0].msg
    assert errors[0].hint == "Options: counters, lookups, strategy, timeout, transparent."
    assert errors[0].obj is Profile


# E010: lookups


@pytest.mark.parametrize(
    ("label", "lookup"),
    [
        ("testapp.Profile", "email"),  # not unique
        ("testapp.Profile", "id"),  # the pk
        ("testapp.Profile", "pk"),  # the pk, by alias
        ("testapp.Item", "id"),  # a UUID pk is still the pk
        ("testapp.Profile", "nickname"),  # no such field
        ("testapp.Profile", "tags"),  # many-to-many, not a column
        ("testapp.Profile", "team"),  # a foreign key, not unique
        ("auth.User", "email"),
    ],
)
def test_e010_lookup_is_not_a_unique_field(label: str, lookup: str) -> None:
    errors = model_errors(label, lookups=[lookup])
    assert ids(errors) == ["E010"]
    assert f"lookups names {lookup!r}, which is not a unique field of {label}" in errors[0].msg
    assert "unique=True" in hint(errors[0])
    assert errors[0].obj is apps.get_model(label)


def test_e010_once_per_bad_lookup() -> None:
    errors = model_errors("testapp.Profile", lookups=["username", "email", "bio"])
    assert ids(errors) == ["E010", "E010"]
    assert ["'email'" in errors[0].msg, "'bio'" in errors[1].msg] == [True, True]


# E011: counters


@pytest.mark.parametrize(
    "counter", ["username", "ratio", "balance", "active", "team", "id", "nope"]
)
def test_e011_counter_is_not_an_integer_field(counter: str) -> None:
    errors = model_errors("testapp.Profile", counters=[counter])
    assert ids(errors) == ["E011"]
    assert f"counters names {counter!r}, not an integer field of testapp.Profile" in (errors[0].msg)
    assert "IntegerField" in hint(errors[0])
    assert errors[0].obj is Profile


# E012: strategy


@pytest.mark.parametrize("strategy", ["write_behind", "write-through", "", None])
def test_e012_unknown_strategy(strategy: Any) -> None:
    errors = model_errors("testapp.Profile", strategy=strategy)
    assert ids(errors) == ["E012"]
    assert f"strategy {strategy!r} is not a known strategy" in errors[0].msg
    assert errors[0].hint == "Choose one of: invalidate, write_through."


# E013, E018: WRITE_BEHIND


@pytest.mark.parametrize("key", ["BATCH", "interval", "RETRIES"])
def test_e013_write_behind_unknown_key(key: str) -> None:
    errors = settings_errors(WRITE_BEHIND={key: 100})
    assert ids(errors) == ["E013"]
    assert f"unknown key {key!r}" in errors[0].msg
    assert errors[0].hint == "Valid keys: BATCH_SIZE, INTERVAL, RECLAIM_AFTER, STRIPES."


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        ("INTERVAL", 0, "a finite number"),
        ("INTERVAL", -5, "a finite number"),
        ("INTERVAL", "5", "a finite number"),
        ("INTERVAL", True, "a finite number"),
        ("INTERVAL", None, "a finite number"),
        ("INTERVAL", float("inf"), "a finite number"),
        ("INTERVAL", float("nan"), "a finite number"),
        ("BATCH_SIZE", 0, "an int"),
        ("BATCH_SIZE", -1, "an int"),
        ("BATCH_SIZE", True, "an int"),
        ("BATCH_SIZE", None, "an int"),
        ("BATCH_SIZE", 2.5, "an int"),
        ("BATCH_SIZE", 1000.0, "an int"),
        ("BATCH_SIZE", float("inf"), "an int"),
    ],
)
def test_e018_write_behind_bad_value(key: str, value: Any, kind: str) -> None:
    errors = settings_errors(WRITE_BEHIND={key: value})
    assert ids(errors) == ["E018"]
    assert errors[0].msg == (
        f"CACHESTRAT['WRITE_BEHIND'][{key!r}] must be {kind} greater than 0, not {value!r}."
    )
    assert errors[0].hint == f"Default: {DEFAULTS['WRITE_BEHIND'][key]!r}."


def test_write_behind_reports_each_key_with_its_own_id() -> None:
    errors = settings_errors(WRITE_BEHIND={"INTERVAL": 0, "BATCH": 1, "BATCH_SIZE": 0.5})
    assert ids(errors) == ["E018", "E013", "E018"]


# E014, E019, E020: option values of the wrong kind

WHERE = "CACHESTRAT['MODELS']['testapp.Profile']"


@pytest.mark.parametrize(
    "value", [0, -60, "60", True, float("inf"), float("-inf"), float("nan"), 10**400]
)
def test_e014_bad_timeout(value: Any) -> None:
    errors = model_errors("testapp.Profile", timeout=value)
    assert ids(errors) == ["E014"]
    assert errors[0].msg == (
        f"{WHERE}.timeout must be a finite number greater than 0, not {value!r}."
    )
    assert errors[0].hint == "Seconds, e.g. 3600; leave it out to use TIMEOUT."
    assert errors[0].obj is Profile


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_e019_transparent_not_a_bool(value: Any) -> None:
    errors = model_errors("testapp.Profile", transparent=value)
    assert ids(errors) == ["E019"]
    assert errors[0].msg == f"{WHERE}.transparent must be True or False, not {value!r}."
    assert errors[0].hint == "Use True or False."
    assert errors[0].obj is Profile


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("lookups", "username"),
        ("lookups", None),
        ("lookups", ["username", 1]),
        ("lookups", {"username": True}),
        ("counters", {"likes"}),
        ("counters", "likes"),
        ("counters", (None,)),
        ("counters", [["likes"]]),
    ],
)
def test_e020_names_not_a_list_or_tuple_of_names(option: str, value: Any) -> None:
    errors = model_errors("testapp.Profile", **{option: value})
    assert ids(errors) == ["E020"]
    assert errors[0].msg == (
        f"{WHERE}.{option} must be a list or tuple of field names, not {value!r}."
    )
    assert errors[0].hint == 'Use a tuple such as ("username",).'
    assert errors[0].obj is Profile


def test_every_option_has_a_check() -> None:
    assert set(_CHECKS) == OPTION_NAMES


# Patterns: "app.*" and "*" check the options against every model they name


def test_app_pattern_checks_every_model_of_the_app() -> None:
    errors = model_errors("testapp.*", counters=["likes"])
    assert set(ids(errors)) == {"E011"}
    concrete = [m for m in apps.get_app_config("testapp").get_models() if not m._meta.proxy]
    without_likes = [m for m in concrete if m is not Profile]
    assert len(without_likes) >= 5
    assert sorted(e.obj._meta.label for e in errors) == sorted(m._meta.label for m in without_likes)


def test_star_pattern_checks_every_model() -> None:
    errors = model_errors("*", timeout=0)
    concrete = [m for m in apps.get_models() if not m._meta.proxy]
    assert ids(errors) == ["E014"] * len(concrete)
    assert User in [e.obj for e in errors]


# CacheMeta on models that inherit the mixin, checked by check_models()


def test_e009_cache_meta_unknown_option(monkeypatch: pytest.MonkeyPatch) -> None:
    cache_meta(Team, monkeypatch, ttl=60)
    errors = check_models()
    assert ids(errors) == ["E009"]
    assert errors[0].msg == "Team.CacheMeta has an unknown option 'ttl'."
    assert errors[0].obj is Team


def test_cache_meta_private_attributes_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    cache_meta(Team, monkeypatch, _note="not an option")
    assert check_models() == []


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"lookups": ("name",)}, ["E010"]),
        ({"counters": ("name",)}, ["E011"]),
        ({"strategy": "write_behind"}, ["E012"]),
        ({"timeout": 0}, ["E014"]),
        ({"timeout": float("inf")}, ["E014"]),
        ({"transparent": "yes"}, ["E019"]),
        ({"lookups": "name", "counters": ("id",)}, ["E020", "E011"]),
    ],
)
def test_cache_meta_bad_options(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], expected: list[str]
) -> None:
    cache_meta(Team, monkeypatch, **options)
    errors = check_models()
    assert ids(errors) == expected
    assert all(e.obj is Team for e in errors)
    assert all(e.msg.startswith("Team.CacheMeta.") for e in errors)


def test_cache_meta_of_a_proxy_is_checked_once_with_its_concrete_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Profile.CacheMeta, "lookups", ("bio",))
    errors = check_models()
    assert ids(errors) == ["E010"]
    assert errors[0].obj is Profile


def test_cache_meta_is_inherited_by_multi_table_children(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache_meta(Place, monkeypatch, counters=("name",))
    errors = check_models()
    assert ids(errors) == ["E011", "E011"]
    assert {e.obj for e in errors} == {Place, Restaurant}


def test_w110_a_column_counted_by_a_parent_and_its_multi_table_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache_meta(Place, monkeypatch, counters=("visits",))  # Restaurant inherits it
    warnings = check_counters()
    assert ids(warnings) == ["W110"]
    assert warnings[0].obj is Restaurant
    assert warnings[0].msg.startswith(
        "Column testapp_place.visits is a write-behind counter of testapp.Place and "
        "testapp.Restaurant"
    )
    assert "give the child a CacheMeta of its own" in (warnings[0].hint or "")
    cache_meta(Restaurant, monkeypatch, counters=())
    assert check_counters() == []


def test_a_counter_of_a_multi_table_child_alone_is_no_warning() -> None:
    with override_settings(CACHESTRAT={"MODELS": {"testapp.Restaurant": {"counters": ["visits"]}}}):
        assert check_counters() == []


def test_valid_cache_meta_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Item.CacheMeta, "strategy", "write_through", raising=False)
    monkeypatch.setattr(Item.CacheMeta, "transparent", True, raising=False)
    assert check_models() == []


# Every id: one bad value yields exactly that id, with a hint

PROFILE = "testapp.Profile"
ONE_BAD_VALUE_PER_ID: dict[str, Any] = {
    "E001": ["TIMEOUT", 60],
    "E002": {"BOGUS": 1},
    "E003": {"TIMEOUT": "60"},
    "E004": {"TIMEOUT": 0},
    "E005": {"JITTER": 1},
    "E006": {"CACHE_ALIAS": "nope"},
    "E007": {"CACHE_ALIAS": "local"},
    "E008": {"MODELS": {"nope.Model": {}}},
    "E009": {"MODELS": {PROFILE: {"ttl": 60}}},
    "E010": {"MODELS": {PROFILE: {"lookups": ["email"]}}},
    "E011": {"MODELS": {PROFILE: {"counters": ["bio"]}}},
    "E012": {"MODELS": {PROFILE: {"strategy": "write_behind"}}},
    "E013": {"WRITE_BEHIND": {"BATCH": 100}},
    "E014": {"MODELS": {PROFILE: {"timeout": 0}}},
    "E015": {"KEY_PREFIX": "cs*"},
    "E016": {"MODELS": {"testapp.ProfileProxy": {}}},
    "E017": {"MODELS": {PROFILE: None}},
    "E018": {"WRITE_BEHIND": {"BATCH_SIZE": 2.5}},
    "E019": {"MODELS": {PROFILE: {"transparent": 1}}},
    "E020": {"MODELS": {PROFILE: {"lookups": "username"}}},
}


def test_the_list_of_bad_values_covers_every_id() -> None:
    source = "".join(path.read_text() for path in CHECKS_SOURCES)
    settings_ids = set(re.findall(r'"([EW]0\d\d)"', source)) - {"E021"}  # E021: wiring
    assert sorted(ONE_BAD_VALUE_PER_ID) == sorted(settings_ids)


@pytest.mark.parametrize(("check_id", "cachestrat"), sorted(ONE_BAD_VALUE_PER_ID.items()))
def test_every_error_has_a_hint(check_id: str, cachestrat: Any) -> None:
    with override_settings(CACHESTRAT=cachestrat):
        errors = check_settings()
    assert ids(errors) == [check_id]
    assert errors[0].hint and errors[0].hint.strip()


# The checks are registered: manage.py check fails on them


def test_manage_py_check_passes_on_valid_settings() -> None:
    out = StringIO()
    call_command("check", stdout=out)
    assert "no issues" in out.getvalue()


def test_manage_py_check_reports_a_bad_setting() -> None:
    bad = override_settings(CACHESTRAT={"JITTER": 2})
    with bad, pytest.raises(SystemCheckError, match=r"django_cachestrat\.E005"):
        call_command("check")


def test_manage_py_check_reports_a_bad_cache_meta(monkeypatch: pytest.MonkeyPatch) -> None:
    cache_meta(Team, monkeypatch, lookups=("name",))
    with pytest.raises(SystemCheckError, match=r"testapp\.Team: \(django_cachestrat\.E010\)"):
        call_command("check")


def test_every_check_id_is_tested_here() -> None:
    source = "".join(path.read_text() for path in CHECKS_SOURCES)
    check_ids = sorted(set(re.findall(r'"(?:django_cachestrat\.)?([EW]\d\d\d)"', source)))
    assert len(check_ids) >= 22, check_ids
    tests = Path(__file__).read_text()
    untested = [i for i in check_ids if not re.search(rf"def test_{i.lower()}_", tests)]
    assert untested == []


# Reads sent to the database instead of the cache (warnings)


def test_no_read_of_the_test_models_is_sent_to_the_database() -> None:
    assert check_reads() == []


def test_w120_a_pk_or_lookup_under_a_collation_is_read_from_the_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Item._meta.get_field("code"), "db_collation", "case_insensitive")
    warnings = check_reads()
    assert ids(warnings) == ["W120"]
    assert warnings[0].obj is Item
    assert "testapp.Item.code has a db_collation" in warnings[0].msg
    assert "the lookup 'code'" in warnings[0].msg and "case-insensitive" in hint(warnings[0])
    monkeypatch.setattr(Item._meta.pk, "db_collation", "case_insensitive", raising=False)
    warnings = check_reads()
    assert ids(warnings) == ["W120", "W120"] and "its pk" in warnings[0].msg


class OwnGet(QuerySet):  # type: ignore[type-arg]
    def get(self, *args: Any, **kwargs: Any) -> Any:
        return super().get(*args, **kwargs)


def test_w121_a_transparent_manager_whose_queryset_overrides_get(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Team._meta.default_manager, "_queryset_class", OwnGet)
    with override_settings(CACHESTRAT={"MODELS": {"testapp.Team": {"transparent": True}}}):
        warnings = check_reads()
    assert ids(warnings) == ["W121"]
    assert warnings[0].obj is Team
    assert "testapp.Team.objects: its queryset OwnGet overrides get()" in warnings[0].msg
    assert check_reads() == []  # not transparent: nothing to leave alone


def test_manage_py_check_shows_the_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Item._meta.get_field("code"), "db_collation", "case_insensitive")
    err = StringIO()
    call_command("check", stderr=err, stdout=StringIO())
    assert "testapp.Item: (django_cachestrat.W120)" in err.getvalue()


def test_e021_a_wiring_failure_is_logged_and_reported(caplog: Any) -> None:
    import logging

    from django_cachestrat import hooks
    from django_cachestrat.checks import check_wiring

    assert check_wiring() == []
    broken = override_settings(CACHESTRAT={"MODELS": {"auth.User": {"lookups": 5}}})
    with caplog.at_level(logging.ERROR, "django_cachestrat"), broken:
        assert hooks.failure() is not None
        (message,) = check_wiring()
        assert message.id == "django_cachestrat.E021"
        assert "TypeError" in message.msg and message.hint
    assert "could not wire" in caplog.text
    assert hooks.failure() is None and check_wiring() == []


# Several databases: REPLICAS and aliases (checks_databases.py)


def test_e180_a_replicas_entry_names_an_unknown_alias() -> None:
    errors = settings_errors(REPLICAS={"replica": "primary"})
    assert ids(errors) == ["E180"]
    assert "'primary'" in errors[0].msg and "not a DATABASES alias" in errors[0].msg
    assert ids(settings_errors(REPLICAS={"nope": "default"})) == ["E180"]
    assert ids(settings_errors(REPLICAS={"replica": 1})) == ["E180"]


def test_e181_a_replica_mapped_to_itself() -> None:
    errors = settings_errors(REPLICAS={"replica": "replica"})
    assert ids(errors) == ["E181"]
    assert "to itself" in errors[0].msg


def test_e182_a_chain_of_replicas() -> None:
    errors = settings_errors(REPLICAS={"replica": "other", "other": "default"})
    assert ids(errors) == ["E182"]
    assert "'replica'" in errors[0].msg and hint(errors[0])


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_e183_an_alias_that_cannot_name_keys() -> None:
    databases = {**django_settings.DATABASES, "eu{1}": django_settings.DATABASES["default"]}
    with override_settings(DATABASES=databases, CACHESTRAT={}):
        errors = check_settings()
    assert ids(errors) == ["E183"]
    assert "'eu{1}'" in errors[0].msg


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_w140_a_test_mirror_not_declared_a_replica() -> None:
    mirror = {**django_settings.DATABASES["default"], "TEST": {"MIRROR": "default"}}
    databases = {**django_settings.DATABASES, "mirror": mirror}
    with override_settings(DATABASES=databases, CACHESTRAT={}):
        assert ids(check_settings()) == ["W140"]
    with override_settings(DATABASES=databases, CACHESTRAT={"REPLICAS": {"mirror": "default"}}):
        assert ids(check_settings()) == []


def test_replica_lag_must_be_a_positive_number() -> None:
    assert ids(settings_errors(REPLICA_LAG=0)) == ["E004"]
    assert ids(settings_errors(REPLICAS=["replica"])) == ["E003"]
    assert ids(settings_errors(REPLICAS={"replica": "default"}, REPLICA_LAG=0.5)) == []


def test_e184_an_unknown_external_writes_key() -> None:
    errors = settings_errors(EXTERNAL_WRITES={"ENABLE": True})
    assert ids(errors) == ["E184"]
    assert "'ENABLE'" in errors[0].msg and "ENABLED" in hint(errors[0])


def test_e185_a_bad_external_writes_value() -> None:
    for bad in ({"ENABLED": 1}, {"BATCH_SIZE": 0}, {"INTERVAL": -1}, {"DATABASES": ["nope"]}):
        errors = settings_errors(EXTERNAL_WRITES=bad)
        assert ids(errors) == ["E185"], bad
    good = {"ENABLED": True, "DATABASES": ["default"], "BATCH_SIZE": 10, "INTERVAL": 0.5}
    assert ids(settings_errors(EXTERNAL_WRITES=good)) == []


# E160, E161: CONNECTION


def cache_client() -> Any:
    """A CONNECTION factory for the checks below."""
    from redis import Redis

    return Redis()


NOT_A_FACTORY = 42


def test_e160_connection_that_does_not_import() -> None:
    errors = settings_errors(CONNECTION="no_such_package.clients.cache_client")
    assert ids(errors) == ["E160"]
    assert "'no_such_package.clients.cache_client' cannot be imported" in errors[0].msg
    assert "redis-py client" in hint(errors[0])


@pytest.mark.parametrize("path", [f"{__name__}.NOT_A_FACTORY", "django_redis.cache.RedisCache"])
def test_e161_connection_that_is_not_a_client_factory(path: str) -> None:
    errors = settings_errors(CONNECTION=path)
    assert ids(errors) == ["E161"]
    assert "not a zero-argument callable" in errors[0].msg


def test_connection_type_is_checked() -> None:
    assert ids(settings_errors(CONNECTION=42)) == ["E003"]


@pytest.mark.parametrize("path", [f"{__name__}.cache_client", "redis.Redis"])
def test_with_connection_the_cache_alias_need_not_be_django_redis(path: str) -> None:
    with override_settings(CACHESTRAT={"CACHE_ALIAS": "local", "CONNECTION": path}):
        assert check_settings() == []
    with override_settings(CACHESTRAT={"CACHE_ALIAS": "nowhere", "CONNECTION": path}):
        assert check_settings() == []


# W130: eviction of pending increments


def test_w130_allkeys_policy_with_write_behind_counters() -> None:
    from django_cachestrat.checks_counters import check_eviction
    from tests import cluster as servers
    from tests.servers import RedisServer

    server = RedisServer("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lfu")
    server.start()
    servers.running["standalone"] = server
    cachestrat = {**django_settings.CACHESTRAT, "CONNECTION": "tests.cluster.standalone_client"}
    try:
        with override_settings(CACHESTRAT=cachestrat):
            warnings = check_eviction()
    finally:
        servers.running.pop("standalone", None)
        server.stop()
    assert ids(warnings) == ["W130"]
    assert "allkeys-lfu" in warnings[0].msg and "testapp.profile" in warnings[0].msg
    assert "volatile-lru" in hint(warnings[0])


# E190-E193: metrics and tracing


def test_e190_metrics_without_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_errors(METRICS=True) == []
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    errors = settings_errors(METRICS=True)
    assert ids(errors) == ["E190"]
    assert "django-cachestrat[prometheus]" in hint(errors[0])
    assert settings_errors(METRICS=False) == []


def test_e191_unknown_tracing_key() -> None:
    errors = settings_errors(TRACING={"ENABLED": True, "HITS": True})
    assert ids(errors) == ["E191"]
    assert "'HITS'" in errors[0].msg and "ENABLED, READS" in hint(errors[0])


@pytest.mark.parametrize("key", ["ENABLED", "READS"])
def test_e192_tracing_switch_that_is_not_a_bool(key: str) -> None:
    errors = settings_errors(TRACING={key: "yes"})
    assert ids(errors) == ["E192"]
    assert f"CACHESTRAT['TRACING']['{key}'] must be True or False" in errors[0].msg


def test_e193_tracing_without_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_errors(TRACING={"ENABLED": True, "READS": True}) == []
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)  # as if not installed
    errors = settings_errors(TRACING={"ENABLED": True})
    assert ids(errors) == ["E193"]
    assert "django-cachestrat[opentelemetry]" in hint(errors[0])
    assert settings_errors(TRACING={"ENABLED": False}) == []


def test_metrics_and_tracing_types_are_checked() -> None:
    assert ids(settings_errors(METRICS="on", TRACING=True)) == ["E003", "E003"]
