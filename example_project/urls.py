"""URLs: the profile pages, the blog and the admin."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from .accounts import views
from .blog import views as blog

urlpatterns = [
    path("", views.profile_list, name="profile-list"),
    path("u/<str:username>/", views.profile_detail, name="profile-detail"),
    path("blog/", blog.post_list, name="post-list"),
    path("p/<slug:slug>/", blog.post_detail, name="post-detail"),
    path("p/<slug:slug>/like/", blog.post_like, name="post-like"),
    path("admin/", admin.site.urls),
]
if settings.DEBUG_TOOLBAR:
    urlpatterns.append(path("__debug__/", include("debug_toolbar.urls")))
