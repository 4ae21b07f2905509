"""Frames in and out: image preprocessing, frame helpers, long-video windows, previews, post-checks."""
