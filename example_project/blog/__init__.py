"""Blog app: posts cached by slug, with likes and views as write-behind counters."""
