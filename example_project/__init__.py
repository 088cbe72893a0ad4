"""Example Django project showing django-cachestrat on a small Profile model."""
