"""Example Django project showing django-cachestrat on a Profile and a Post model."""

# The Celery app is loaded with Django, so that shared tasks use it (as the Celery docs
# recommend); without Celery installed, the project runs and only the flush task is missing.
try:
    from .celery import app as celery_app
except ImportError:  # Celery comes with the "celery" and "test" extras
    celery_app = None

__all__ = ["celery_app"]
