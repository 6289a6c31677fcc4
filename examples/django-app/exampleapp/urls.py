from django.contrib import admin
from django.urls import path

from notes import views

urlpatterns = [
    path("", views.index, name="index"),
    path("api/notes", views.notes, name="notes"),
    path("api/notes/<int:note_id>", views.note_detail, name="note-detail"),
    path("admin/", admin.site.urls),
]
