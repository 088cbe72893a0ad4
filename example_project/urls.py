"""URLs: the profile pages and the admin."""

from django.contrib import admin
from django.urls import path

from .accounts import views

urlpatterns = [
    path("", views.profile_list, name="profile-list"),
    path("u/<str:username>/", views.profile_detail, name="profile-detail"),
    path("admin/", admin.site.urls),
]
