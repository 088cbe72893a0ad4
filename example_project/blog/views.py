"""Blog pages: posts read through ``Post.cached``; views and likes counted write-behind."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from .models import Post

LIST_SIZE = 20


def post_list(request: HttpRequest) -> HttpResponse:
    """The latest posts: one query for the pks, the rows (and pending counts) from Redis."""
    pks = list(Post.objects.values_list("pk", flat=True)[:LIST_SIZE])
    rows = Post.cached.get_many(pks)
    posts = [rows[pk] for pk in pks if pk in rows]
    return render(request, "blog/post_list.html", {"posts": posts})


def post_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """One post, found by slug without a query once cached; each request counts a view.

    The counts shown are the database values plus the increments still pending in Redis,
    as read before this view is counted.
    """
    post = _get_post(slug)
    Post.cached.incr(post.pk, "views")
    return render(request, "blog/post_detail.html", {"post": post})


@require_POST
def post_like(request: HttpRequest, slug: str) -> HttpResponse:
    """Count a like (the form on the post page, CSRF-protected) and go back to the post."""
    post = _get_post(slug)
    Post.cached.incr(post.pk, "likes")
    return redirect(post)


def _get_post(slug: str) -> Post:
    try:
        return Post.cached.get(slug=slug)
    except Post.DoesNotExist:
        raise Http404(f"No post with slug {slug!r}") from None
