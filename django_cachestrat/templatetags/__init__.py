"""Template tags of the admin cache pages."""
