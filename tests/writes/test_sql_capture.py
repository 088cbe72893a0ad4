"""The statement capture against real PostgreSQL: raw SQL shapes, fallbacks and cascades."""

from __future__ import annotations

import django
import pytest
from django.db import connection, transaction
from django.db.models import F
from psycopg import sql as psql

from django_cachestrat import invalidation
from django_cachestrat.plan import plan_for
from tests.factories import ProfileFactory, TeamFactory
from tests.helpers import count_queries
from tests.testapp.models import Comment, Dotted, Profile, Schemed, Stadium, Team, Venue

pytestmark = pytest.mark.django_db(transaction=True)

needs_db_on_delete = pytest.mark.skipif(
    django.VERSION < (6, 1), reason="database-level on_delete is new in Django 6.1"
)


def warm(model, pk):
    model.cached.get(pk=pk)
    assert count_queries(lambda: model.cached.get(pk=pk))[1] == 0


def is_cached(model, pk):
    return count_queries(lambda: model.cached.get(pk=pk))[1] == 0


def run(statement, params=None):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


def generation(redis_client, model):
    return redis_client.get(plan_for(model).keys.generation)


# Statements that already join another table, or that carry text after their end.


def test_update_from_another_table_runs_and_names_its_rows(redis_client):
    team = TeamFactory(name="red")
    changed, kept = ProfileFactory(team=team, age=1), ProfileFactory(age=1)
    warm(Profile, changed.pk)
    warm(Profile, kept.pk)
    rows = run(
        "UPDATE testapp_profile SET age = 5 FROM testapp_team"
        " WHERE testapp_profile.team_id = testapp_team.id AND testapp_team.name = %s",
        ["red"],
    )
    assert rows == 1
    assert Profile.cached.get(pk=changed.pk).age == 5
    assert is_cached(Profile, kept.pk)  # only the returned row was dropped
    # (No flush: the other row is still a hit.)


def test_delete_using_another_table_runs_and_names_its_rows():
    team = TeamFactory(name="gone")
    doomed, kept = ProfileFactory(team=team), ProfileFactory()
    warm(Profile, doomed.pk)
    warm(Profile, kept.pk)
    run(
        "DELETE FROM testapp_profile p USING testapp_team t WHERE p.team_id = t.id AND t.name = %s",
        ["gone"],
    )
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(pk=doomed.pk)
    assert is_cached(Profile, kept.pk)


def test_a_data_migration_updating_from_another_table_runs():
    team = TeamFactory(name="mig")
    profile = ProfileFactory(team=team, bio="")
    warm(Profile, profile.pk)
    with connection.schema_editor() as editor:  # what RunSQL does
        editor.execute(
            "UPDATE testapp_profile SET bio = testapp_team.name FROM testapp_team"
            " WHERE testapp_profile.team_id = testapp_team.id"
        )
    assert Profile.cached.get(pk=profile.pk).bio == "mig"


def test_a_trailing_comment_neither_fails_the_call_nor_hides_the_rows():
    profile = ProfileFactory(age=1)
    warm(Profile, profile.pk)
    run("UPDATE testapp_profile SET age = 7 WHERE id = %s -- bump the age", [profile.pk])
    assert Profile.cached.get(pk=profile.pk).age == 7


def test_two_statements_in_one_call_flush_both_tables():
    team = TeamFactory(name="before")
    profile = ProfileFactory(age=1)
    warm(Profile, profile.pk)
    warm(Team, team.pk)
    run(
        f"UPDATE testapp_profile SET age = 8 WHERE id = {profile.pk};"
        f" UPDATE testapp_team SET name = 'after' WHERE id = {team.pk}"
    )
    assert Profile.cached.get(pk=profile.pk).age == 8
    assert Team.cached.get(pk=team.pk).name == "after"


# Names the old prefix regex did not read.


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE public.testapp_profile SET age = 3 WHERE id = %s",
        'UPDATE "public"."testapp_profile" SET age = 3 WHERE id = %s',
        "UPDATE ONLY testapp_profile SET age = 3 WHERE id = %s",
        "UPDATE TESTAPP_PROFILE SET AGE = 3 WHERE ID = %s",
        "/* a leading comment */ UPDATE testapp_profile SET age = 3 WHERE id = %s",
    ],
)
def test_raw_update_names_are_read_as_postgresql_reads_them(statement, redis_client):
    profile, other = ProfileFactory(age=1), ProfileFactory(age=1)
    warm(Profile, profile.pk)
    warm(Profile, other.pk)
    run(statement, [profile.pk])
    assert Profile.cached.get(pk=profile.pk).age == 3
    assert is_cached(Profile, other.pk)
    # (No flush: the other row is still a hit.)


def test_a_composed_statement_is_rendered_and_seen():
    profile = ProfileFactory(age=1)
    warm(Profile, profile.pk)
    statement = psql.SQL("UPDATE {} SET {} = %s WHERE {} = %s").format(
        psql.Identifier("testapp_profile"), psql.Identifier("age"), psql.Identifier("id")
    )
    run(statement, [4, profile.pk])
    assert Profile.cached.get(pk=profile.pk).age == 4


def test_merge_flushes_its_target():
    profile = ProfileFactory(age=1)
    warm(Profile, profile.pk)
    run(
        "MERGE INTO testapp_profile p USING (VALUES (%s::bigint, 11)) AS v(id, age)"
        " ON p.id = v.id WHEN MATCHED THEN UPDATE SET age = v.age",
        [profile.pk],
    )
    assert Profile.cached.get(pk=profile.pk).age == 11


def test_a_write_inside_a_cte_flushes_the_tables_it_names():
    profile = ProfileFactory()
    warm(Profile, profile.pk)
    run(
        "WITH gone AS (DELETE FROM testapp_profile WHERE id = %s RETURNING id)"
        " SELECT count(*) FROM gone",
        [profile.pk],
    )
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(pk=profile.pk)


def test_truncate_cascade_flushes_every_table_it_empties():
    profile = ProfileFactory(team=TeamFactory())
    comment = Comment.objects.create(profile=profile, text="hi")
    warm(Profile, profile.pk)
    warm(Comment, comment.pk)
    run("TRUNCATE testapp_team CASCADE")  # profile references team, comment profile
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(pk=profile.pk)
    with pytest.raises(Comment.DoesNotExist):
        Comment.cached.get(pk=comment.pk)


def test_an_upsert_whose_do_update_is_on_another_line_flushes():
    team = TeamFactory(name="old")
    warm(Team, team.pk)
    run(
        "INSERT INTO testapp_team (id, name) VALUES (%s, %s) ON CONFLICT (id) DO\n"
        "    UPDATE SET name = EXCLUDED.name",
        [team.pk, "new"],
    )
    assert Team.cached.get(pk=team.pk).name == "new"


@pytest.mark.parametrize(
    ("model", "table"),
    [(Schemed, '"cachestrat_schema"."schemed"'), (Dotted, '"testapp.dotted"')],
)
def test_tables_in_a_schema_or_with_a_dot_in_their_name(model, table):
    row, other = model.objects.create(name="a"), model.objects.create(name="b")
    warm(model, row.pk)
    warm(model, other.pk)
    run(f"UPDATE {table} SET name = 'changed' WHERE id = %s", [row.pk])
    assert model.cached.get(pk=row.pk).name == "changed"
    assert is_cached(model, other.pk)
    model.objects.filter(pk=other.pk).update(name="orm")
    assert model.cached.get(pk=other.pk).name == "orm"


# Statements that already return columns, and large ones.


def test_a_save_with_an_f_expression_drops_only_that_row(redis_client):
    profile, other = ProfileFactory(age=1), ProfileFactory(age=1)
    warm(Profile, profile.pk)
    warm(Profile, other.pk)
    profile.age = F("age") + 1  # Django 6.1 adds RETURNING "age" to this UPDATE
    profile.save()
    assert Profile.cached.get(pk=profile.pk).age == 2
    assert is_cached(Profile, other.pk)
    # (No flush: the other row is still a hit.)


def test_a_raw_update_returning_its_pks_names_its_rows(redis_client):
    profile, other = ProfileFactory(age=1), ProfileFactory(age=40)
    warm(Profile, profile.pk)
    warm(Profile, other.pk)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE testapp_profile SET age = 2 WHERE age < %s RETURNING id", [10])
        assert cursor.fetchall() == [(profile.pk,)]  # the caller still reads every row
    assert Profile.cached.get(pk=profile.pk).age == 2
    assert is_cached(Profile, other.pk)
    # (No flush: the other row is still a hit.)


def test_executemany_names_the_pk_of_each_parameter_row(redis_client):
    a, b, kept = TeamFactory(name="a"), TeamFactory(name="b"), TeamFactory(name="k")
    for team in (a, b, kept):
        warm(Team, team.pk)
    with connection.cursor() as cursor:
        cursor.executemany(
            'UPDATE "testapp_team" SET "name" = %s WHERE "testapp_team"."id" = %s',
            [("a2", a.pk), ("b2", b.pk)],
        )
    assert (Team.cached.get(pk=a.pk).name, Team.cached.get(pk=b.pk).name) == ("a2", "b2")
    assert is_cached(Team, kept.pk)
    # (No flush: the other row is still a hit.)


def test_a_mass_update_is_not_read_into_memory_to_be_flushed(redis_client, monkeypatch):
    monkeypatch.setattr(invalidation, "BULK_LIMIT", 100)
    Profile.objects.bulk_create([Profile(username=f"mass{i}") for i in range(300)])
    before = generation(redis_client, Profile)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE testapp_profile SET age = 9")
        assert cursor.cursor.rownumber == 0  # no returned row was fetched
    assert generation(redis_client, Profile) not in (None, before)  # flushed


# Rows the database changes by itself.


def test_multi_table_child_with_its_own_pk_is_invalidated_by_a_parent_write():
    Venue.objects.bulk_create([Venue(name="filler") for _ in range(3)])  # ids drift apart
    stadium = Stadium.objects.create(name="Old Trafford", seats=1)
    assert stadium.number != stadium.venue_ptr_id
    warm(Stadium, stadium.number)
    Venue.objects.filter(pk=stadium.venue_ptr_id).update(name="Theatre of Dreams")
    assert Stadium.cached.get(pk=stadium.number).name == "Theatre of Dreams"
    venue = Venue.objects.get(pk=stadium.venue_ptr_id)
    venue.name = "OT"
    venue.save()
    assert Stadium.cached.get(pk=stadium.number).name == "OT"
    warm(Venue, stadium.venue_ptr_id)
    Stadium.objects.filter(pk=stadium.number).update(seats=2)  # the child table only
    stadium.refresh_from_db()
    stadium.name = "Old"
    stadium.save()
    assert Venue.cached.get(pk=stadium.venue_ptr_id).name == "Old"
    assert Stadium.cached.get(pk=stadium.number).seats == 2


@needs_db_on_delete
def test_database_cascade_from_an_uncached_parent_drops_the_cached_children():
    from tests.dbcascade.models import Author, Book, Chapter

    author = Author.objects.create(name="a")
    book = Book.objects.create(author=author, title="b")
    chapter = Chapter.objects.create(book=book, title="c")
    warm(Book, book.pk)
    warm(Chapter, chapter.pk)
    author.delete()  # one DELETE of the author; the database deletes book and chapter
    with pytest.raises(Book.DoesNotExist):
        Book.cached.get(pk=book.pk)
    with pytest.raises(Chapter.DoesNotExist):
        Chapter.cached.get(pk=chapter.pk)


@needs_db_on_delete
def test_database_set_null_set_default_and_cascade_from_a_cached_parent():
    from tests.dbcascade.models import Author, Book, Bookmark, Chapter, Review

    book = Book.objects.create(author=Author.objects.create(name="a"), title="b")
    chapter = Chapter.objects.create(book=book, title="c")
    review = Review.objects.create(book=book, text="r")
    bookmark = Bookmark.objects.create(book=book)
    kept = Review.objects.create(book=None, text="k")
    for model, pk in [(Chapter, chapter.pk), (Review, review.pk), (Bookmark, bookmark.pk)]:
        warm(model, pk)
    with transaction.atomic():
        book.delete()
    with pytest.raises(Chapter.DoesNotExist):
        Chapter.cached.get(pk=chapter.pk)
    assert Review.cached.get(pk=review.pk).book_id is None
    assert Bookmark.cached.get(pk=bookmark.pk).book_id is None  # the column's db_default
    assert Review.cached.get(pk=kept.pk).text == "k"
